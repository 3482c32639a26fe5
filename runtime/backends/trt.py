"""TensorRT backend: ``TrtRunner`` (the GraphRunner interface) and ``TrtExecutor`` (the device-resident step).

Engines are deserialised once (after ``engines.cache`` has checked they were built for this GPU, TensorRT
version and exactly these ONNX graphs); each user makes its own execution contexts, every tensor is bound by name
with ``set_tensor_address``; all work goes on one CUDA stream with ``execute_async_v3``. Object and point
counts are checked against the engine profiles before TensorRT sees them. Imports TensorRT when called.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sam2rt import contract as C
from sam2rt.engines.builder import import_tensorrt
from sam2rt.engines.cache import (check_engine_manifest, default_engine_dir, load_engine_manifest, read_engine,
                                  rebuild_command, stored_config)
from sam2rt.engines.preprocess import resize_inputs
from sam2rt.engines.profiles import check_within
from sam2rt.errors import Sam2rtError
from sam2rt.manifest import load_manifest
from sam2rt.runtime.backends.runner import GraphRunner
from sam2rt.runtime.backends.cuda import Buf, CudaAllocator, Stream, import_cudart
from sam2rt.runtime.backends.cuda_graph import GraphCache
from sam2rt.runtime.backends.device_masks import DeviceMasks

STEP_GRAPHS = (C.MEMORY_ATTENTION.name, C.MASK_DECODER.name, C.MEMORY_ENCODER.name)  # what the captured step runs


class TrtEngine:
    """One deserialised engine; execution contexts are made per user (``context``), never shared."""

    def __init__(self, runtime: Any, data: bytes, name: str, rebuild: str) -> None:
        self.name, self.rebuild = name, rebuild
        self.engine = runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise Sam2rtError(f"TensorRT could not deserialise the {name} engine (corrupt, or built by another "
                              f"TensorRT); rebuild the engines: {rebuild}")
        trt = import_tensorrt()
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in self.names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]

    def max_shape(self, name: str) -> tuple[int, ...]:
        """The profile maximum of an input (profile 0)."""
        return tuple(self.engine.get_tensor_profile_shape(name, 0)[2])

    def context(self) -> "TrtContext":
        """A new execution context of this engine, for one user only."""
        return TrtContext(self)


class TrtContext:
    """One execution context: ``bind`` every tensor by name, ``enqueue`` on a stream.

    Each user (a ``TrtRunner``; an executor's captured step; its direct runs) owns its contexts: a CUDA
    graph replays the kernels and addresses its context was set up with, so no other caller may rebind it.
    """

    def __init__(self, engine: TrtEngine) -> None:
        self.engine, self.name = engine, engine.name
        self.context = engine.engine.create_execution_context()
        if self.context is None:
            raise Sam2rtError(f"TensorRT could not create an execution context for the {engine.name} engine (out of "
                              f"GPU memory?); close other GPU programs or rebuild with fewer --max-objects: "
                              f"{engine.rebuild}")

    def bind(self, tensors: dict[str, Buf]) -> None:
        """Set every input shape and every tensor address (all names of the engine must be given)."""
        for name in self.engine.inputs:
            if not self.context.set_input_shape(name, tensors[name].shape):
                raise Sam2rtError(f"{self.name}: TensorRT rejected input {name!r} of shape {tensors[name].shape}")
        for name in self.engine.names:
            if not self.context.set_tensor_address(name, tensors[name].ptr):
                raise Sam2rtError(f"{self.name}: TensorRT rejected the address of {name!r} (shape "
                                  f"{tensors[name].shape}); an engine built for other tensor names or a misaligned "
                                  f"buffer; rebuild the engines: {self.engine.rebuild}")

    def enqueue(self, stream: Stream) -> None:
        if not self.context.execute_async_v3(stream.handle):
            raise Sam2rtError(f"{self.name}: TensorRT execution failed (see its messages above)")


def load_engines(model_dir: str | Path, engine_dir: str | Path | None = None) -> tuple[dict[str, TrtEngine], Any]:
    """Check and deserialise every engine of ``engine_dir`` (default MODEL_DIR/engines) once."""
    from sam2rt.engines.builder import current_device

    trt = import_tensorrt()
    manifest = load_manifest(model_dir)
    engine_dir = Path(engine_dir) if engine_dir is not None else default_engine_dir(model_dir)
    raw = load_engine_manifest(engine_dir, model_dir)
    graphs = {spec.name: manifest.graph_path(spec.name) for spec in C.GRAPHS}
    check_engine_manifest(raw, current_device(), model_dir, engine_dir, graphs, manifest.precision)
    cfg = stored_config(raw)
    rebuild = rebuild_command(model_dir, engine_dir, cfg)
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engines = {name: TrtEngine(runtime, read_engine(engine_dir, entry, model_dir, cfg), name, rebuild)
               for name, entry in raw["engines"].items()}
    return engines, cfg


class TrtRunner(GraphRunner):
    """A graph on TensorRT behind the runner interface: numpy in, numpy out, through pinned staging.

    Device buffers are preallocated at the profile maxima; each ``run`` copies the feeds up, executes and
    copies the outputs down on the one stream, then synchronises (outputs are host arrays).
    """

    def __init__(self, spec: C.GraphSpec, image_size: int, engine: TrtEngine, stream: Stream,
                 allocator: CudaAllocator, limits: dict[str, int], rebuild: str,
                 memory_tokens: int | None = None) -> None:
        super().__init__(spec, image_size, memory_tokens)
        self.stream, self.alloc, self.limits, self.rebuild = stream, allocator, limits, rebuild
        self.engine = engine.context()  # the runner's own context
        dims = {**self._spatial, **limits}
        self._max = {t.name: Buf(0, tuple(int(s) for s in t.resolve(dims)), np.dtype(t.dtype))
                     for t in spec.inputs + spec.outputs}
        self._bufs = {n: allocator.alloc(b.shape, b.dtype, mirrored=True) for n, b in self._max.items()}

    def _run(self, feeds: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        dims = self._check_feeds(feeds)
        check_within(self.name, dims, self.limits)
        shapes = self._resolve_outputs(dims)
        bound: dict[str, Buf] = {}
        for name, a in feeds.items():
            full = self._bufs[name]
            view = Buf(full.ptr, a.shape, full.dtype, None, full.mirror.reshape(-1)[: a.size].reshape(a.shape))
            np.copyto(view.mirror, a)
            self.alloc.upload(view, self.stream)
            bound[name] = view
        for name, shape in shapes.items():
            full = self._bufs[name]
            size = int(np.prod(shape))
            bound[name] = Buf(full.ptr, shape, full.dtype, None, full.mirror.reshape(-1)[:size].reshape(shape))
        self.engine.bind(bound)
        self.engine.enqueue(self.stream)
        for name in shapes:
            self.alloc.download(bound[name], self.stream)
        self.stream.synchronize()
        result = {}
        for name in shapes:
            if name in out:
                np.copyto(out[name], bound[name].mirror)
                result[name] = out[name]
            else:
                result[name] = bound[name].mirror.copy()
        return result


def load_trt_runners(model_dir: str | Path, engine_dir: str | Path | None = None) -> dict[str, GraphRunner]:
    """One TrtRunner per graph, sharing one stream and one allocator (engines checked and deserialised once)."""
    engines, cfg = load_engines(model_dir, engine_dir)
    manifest = load_manifest(model_dir)
    stream = Stream()
    alloc = CudaAllocator(stream)
    limits = {"B": cfg.max_objects, "N": cfg.max_points_fed, "M": cfg.memory_slots, "P": cfg.ptr_slots}
    rebuild = rebuild_command(model_dir, engine_dir or default_engine_dir(model_dir), cfg)
    runners: dict[str, GraphRunner] = {
        spec.name: TrtRunner(spec, manifest.image_size, engines[spec.name], stream, alloc, limits, rebuild,
                             memory_tokens=manifest.memory_tokens)
        for spec in C.GRAPHS}
    for runner in runners.values():
        runner.device_engines, runner.build_config = engines, cfg  # executors make their own contexts of them
    return runners


def executor_for(runners: dict[str, GraphRunner]) -> "TrtExecutor":
    """A tracker's executor over the engines the TrtRunners deserialised (no second copy; its own contexts).

    The bfloat16 rounding engine is built once per loaded model, on first use, and shared.
    """
    first = runners["image_encoder"]
    if not isinstance(first, TrtRunner):
        raise Sam2rtError("the TensorRT executor needs backend trt")
    if not hasattr(first, "bf16_rounder"):
        first.bf16_rounder = build_bf16_rounder(first.image_size, first.build_config.max_objects, first.rebuild,
                                                first._spatial["T"])
    return TrtExecutor(first.device_engines, first.image_size, first.build_config.max_frame_side, first.bf16_rounder)


def build_bf16_rounder(image_size: int, max_objects: int, rebuild: str,
                       memory_tokens: int | None = None) -> TrtEngine | None:
    """A strongly typed engine (B, T, 64) float32 -> bf16 -> float32 (round to nearest even, as torch's
    ``.to(torch.bfloat16)``), or None (warned) where TensorRT or the GPU (compute < 8.0) lacks bfloat16.
    T: memory tokens per slot (hw for SAM 2, the default; the manifest's for EdgeTAM)."""
    from sam2rt.engines.builder import network_flags
    from sam2rt.runtime.backends.cuda import device_properties

    trt = import_tensorrt()
    _, major, _ = device_properties()
    bf16 = getattr(trt.DataType, "BF16", None)
    if bf16 is None or major < 8 or not hasattr(trt.INetworkDefinition, "add_cast"):
        warnings.warn("this GPU/TensorRT has no bfloat16: the bank keeps float32 memories (the official predictor "
                      "stores bf16; expect tiny differences)", stacklevel=3)
        return None
    hw = C.resolve_dims(image_size, memory_tokens)["T"]
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    x = network.add_input("memory_in", trt.DataType.FLOAT, (-1, hw, C.MEM_DIM))
    rounded = network.add_cast(network.add_cast(x, bf16).get_output(0), trt.DataType.FLOAT).get_output(0)
    rounded.name = "memory_out"
    network.mark_output(rounded)
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("memory_in", (1, hw, C.MEM_DIM), (1, hw, C.MEM_DIM), (max_objects, hw, C.MEM_DIM))
    if config.add_optimization_profile(profile) < 0:
        raise Sam2rtError("TensorRT rejected the bf16 rounding engine's profile")
    data = builder.build_serialized_network(network, config)
    if data is None:
        raise Sam2rtError("TensorRT could not build the bf16 rounding engine (see its messages above)")
    return TrtEngine(trt.Runtime(logger), bytes(data), "bf16_round", rebuild)


def allocator_scratch(allocator: CudaAllocator, rounder: TrtEngine) -> Buf:
    """Scratch for the rounding engine's output at its profile maximum."""
    return allocator.alloc(rounder.max_shape("memory_in"), np.float32)


class TrtExecutor:
    """The tracker's executor on TensorRT: device buffers, one stream, GPU preprocessing of uint8 frames, GPU
    thresholding/resizing of results (``masks``), and a CUDA graph per (buffer generation, key) replayed from
    the second time a key is seen; capture failures fall back to direct execution, once warned.

    Contexts: its own, never a TrtRunner's. ``step`` contexts are used only inside the captured step, ``direct``
    contexts for everything else (preprocessing, image encoder, prompts), so a replay never meets a context
    another call has rebound.
    """

    def __init__(self, engines: dict[str, TrtEngine], image_size: int, max_frame_side: int,
                 bf16_rounder: TrtEngine | None = None) -> None:
        self.engines, self.image_size, self.max_side = engines, image_size, max_frame_side
        self.stream = Stream()
        self.allocator = CudaAllocator(self.stream)
        self.direct = {name: engine.context() for name, engine in engines.items()}
        self.step_contexts = {name: engines[name].context() for name in STEP_GRAPHS}
        self.graphs = GraphCache(self.stream)
        self.rounder = bf16_rounder.context() if bf16_rounder is not None else None
        self._round_scratch = (allocator_scratch(self.allocator, bf16_rounder) if bf16_rounder is not None else None)
        self._frame: dict[str, Buf] = {}
        self._prep_graph = C.PREPROCESS_VERTICAL_FIRST.name  # set per frame size in preprocess
        self._capturing = False
        self.post = DeviceMasks(self.allocator, self.stream, self.direct.get(C.POSTPROCESS.name),
                                C.resolve_dims(image_size)["h4"], max_frame_side)

    @property
    def generation(self) -> int:
        return self.graphs.generation

    def preprocess(self, rgb: np.ndarray, image: Buf) -> None:
        H, W = rgb.shape[:2]
        if max(H, W) > self.max_side or min(H, W) < 32:
            raise Sam2rtError(f"the frame is {W}x{H}; the preprocessing engine takes sides 32..{self.max_side}: "
                              "resize frames first or rebuild the engines")
        if self._frame.get("frame") is None or self._frame["frame"].shape != rgb.shape:
            self._free_frame()  # a new frame size: the old staging buffers go
            resize = resize_inputs(H, W, self.image_size)  # once per frame size: weights and pass order
            self._prep_graph = resize.graph
            self._frame = {"frame": self.allocator.alloc(rgb.shape, np.uint8, mirrored=True)}
            for name, value in resize.feeds.items():
                self._frame[name] = self.allocator.alloc(value.shape, value.dtype, mirrored=True)
                np.copyto(self._frame[name].mirror, value)
                self.allocator.upload(self._frame[name])
        np.copyto(self._frame["frame"].mirror, rgb)
        self.allocator.upload(self._frame["frame"])
        self.run(self._prep_graph, {**self._frame, "image": image})  # Pillow's pass order for this size

    def _free_frame(self) -> None:
        for buf in self._frame.values():
            self.allocator.free(buf)
        self._frame = {}

    def run(self, graph: str, tensors: dict[str, Buf]) -> None:
        context = self.step_contexts[graph] if self._capturing else self.direct[graph]
        context.bind(tensors)
        context.enqueue(self.stream)

    def step(self, key: tuple[int, ...], enqueue: Callable[[], None]) -> None:
        self._capturing = True  # the step always runs on the step contexts
        try:
            self.graphs.step(key, enqueue)
        finally:
            self._capturing = False

    def round_bank(self, slot: Buf) -> None:
        """Round a memory slot (B, hw, 64) to bfloat16 on the device, as the official bank stores it: a tiny
        strongly typed engine casts float32 -> bf16 -> float32 into scratch, copied back (TensorRT does not
        allow an engine's input and output to alias). Without bf16 support the bank stays float32."""
        if self.rounder is None:
            return
        scratch = self._round_scratch.view(slot.shape)
        self.rounder.bind({"memory_in": slot, "memory_out": scratch})
        self.rounder.enqueue(self.stream)
        self.allocator.copy(slot, scratch)

    def masks(self, low: np.ndarray, size: tuple[int, int], dtype: type, device: Buf | None = None) -> np.ndarray:
        """(K, 1, h4, h4) logits -> (K, H', W') ``dtype`` masks made by the postprocessing engine; only the masks
        come down. ``device``: the step's ``low_res_masks`` buffer when it holds exactly ``low`` (no hole
        filled), else ``low`` is uploaded (see ``DeviceMasks``)."""
        return self.post(low, size, dtype, device)

    def release(self, buffers: Any) -> None:
        """Free ``buffers`` and every graph captured so far: they hold addresses that are about to go."""
        self.graphs.drop()
        buffers.free()

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        self.graphs.drop()
        self._free_frame()
        self.post.close()
        self.allocator.close()


def device_memory_mb() -> dict[str, float]:
    """Device memory in use (for ``sam2rt bench``)."""
    from sam2rt.runtime.backends.cuda import memory_info

    import_cudart()
    return memory_info()
