"""``TrtExecutor``: the live tracker's executor on TensorRT (device buffers, one stream, one CUDA graph).

Everything runs on one CUDA stream, so one user-managed scratch (sized by the largest engine the executor
runs) serves every execution context it makes. Contexts are made on first use and come in two sets: ``step``
contexts run only inside the captured tracking step, ``direct`` contexts everything else (preprocessing, image
encoder, prompts, postprocessing, conditioning steps), so a context a graph was captured from is never rebound
while that graph lives (TensorRT documents changing a context after capture as undefined). The tracker binds
the same addresses on every frame for one object count (the newest bank slots, fixed feature buffers; ring
positions, temporal indices and validity are small device inputs uploaded inside the step), so ``GraphCache``
holds one graph: captured on the second step of an object count, replayed from then on, dropped when the
count (the buffers) changes. ``close`` returns everything: graphs, buffers, scratch, the stream.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import cv2
import numpy as np

from sam2rt import contract as C
from sam2rt.engines.builder import import_tensorrt
from sam2rt.engines.preprocess import resize_inputs
from sam2rt.errors import Sam2rtError
from sam2rt.runtime.backends.cuda import Buf, CudaAllocator, Stream, import_cudart
from sam2rt.runtime.backends.cuda_graph import GraphCache
from sam2rt.runtime.backends.device_masks import DeviceMasks
from sam2rt.runtime.backends.runner import GraphRunner
from sam2rt.runtime.backends.trt import TrtContext, TrtEngine, TrtRunner

ROUNDER = "bf16_round"


def executor_for(runners: dict[str, GraphRunner]) -> "TrtExecutor":
    """A tracker's executor over the engines the TrtRunners deserialised (no second copy; its own contexts).

    The bfloat16 rounding engine is built once per loaded model, on first use, and shared; where it cannot be
    built the bank keeps float32 memories (warned).
    """
    first = runners["image_encoder"]
    if not isinstance(first, TrtRunner):
        raise Sam2rtError("the TensorRT executor needs backend trt")
    if not hasattr(first, "bf16_rounder"):
        first.bf16_rounder = rounder_or_none(first.image_size, first.build_config.max_objects, first.rebuild)
    ex = TrtExecutor(first.device_engines, first.image_size, first.build_config.max_frame_side, first.bf16_rounder)
    ex.max_objects, ex.rebuild = first.build_config.max_objects, first.rebuild
    return ex


def rounder_or_none(image_size: int, max_objects: int, rebuild: str) -> TrtEngine | None:
    """``build_bf16_rounder``, or None with a warning when TensorRT cannot build it (the bank stays float32)."""
    try:
        return build_bf16_rounder(image_size, max_objects, rebuild)
    except Sam2rtError as e:
        warnings.warn(f"{e}; the bank keeps float32 memories (the official predictor stores bf16: expect tiny "
                      "differences from it)", stacklevel=3)
        return None


def build_bf16_rounder(image_size: int, max_objects: int, rebuild: str) -> TrtEngine | None:
    """A strongly typed engine (B, hw, 64) float32 -> bf16 -> float32 (round to nearest even, as torch's
    ``.to(torch.bfloat16)``), or None (warned) where TensorRT or the GPU (compute < 8.0) lacks bfloat16.
    Raises Sam2rtError when TensorRT fails to build it."""
    from sam2rt.engines.builder import network_flags
    from sam2rt.runtime.backends.cuda import device_properties

    trt = import_tensorrt()
    _, major, _ = device_properties()
    bf16 = getattr(trt.DataType, "BF16", None)
    if bf16 is None or major < 8 or not hasattr(trt.INetworkDefinition, "add_cast"):
        warnings.warn("this GPU/TensorRT has no bfloat16: the bank keeps float32 memories (the official predictor "
                      "stores bf16; expect tiny differences)", stacklevel=3)
        return None
    hw = (image_size // 16) ** 2
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
    return TrtEngine(trt.Runtime(logger), bytes(data), ROUNDER, rebuild)


class TrtExecutor:
    """The tracker's executor on TensorRT: device buffers, one stream, GPU preprocessing of uint8 frames, GPU
    thresholding/resizing of results (``masks``), one CUDA graph of the tracking step (``GraphCache``);
    capture failures fall back to direct execution, once warned. See the module docstring.
    """

    def __init__(self, engines: dict[str, TrtEngine], image_size: int, max_frame_side: int,
                 bf16_rounder: TrtEngine | None = None) -> None:
        self.engines = dict(engines)
        if bf16_rounder is not None:
            self.engines[ROUNDER] = bf16_rounder
        self.image_size, self.max_side = image_size, max_frame_side
        self.stream = Stream()
        self.allocator = CudaAllocator(self.stream)
        self.scratch_bytes = max(e.scratch_bytes for e in self.engines.values())
        self.scratch = self.allocator.alloc((max(self.scratch_bytes, 1),), np.uint8)  # one, for every context
        self.direct: dict[str, TrtContext] = {}
        self.step_contexts: dict[str, TrtContext] = {}
        self.graphs = GraphCache(self.stream)
        self.rounds = bf16_rounder is not None
        self._round_scratch = (self.allocator.alloc(bf16_rounder.max_shape("memory_in"), np.float32)
                               if bf16_rounder is not None else None)
        self._frame: dict[str, Buf] = {}
        self._prep_graph = C.PREPROCESS_VERTICAL_FIRST.name  # set per frame size in preprocess
        self._capturing = False
        self.post = DeviceMasks(self.allocator, self.stream, self._direct_or_none(C.POSTPROCESS.name),
                                C.resolve_dims(image_size)["h4"], max_frame_side)
        self.closed = False
        self.max_objects: int | None = None  # the engines' profile maximum (set by executor_for)
        self.rebuild = "sam2rt build MODEL_DIR --max-objects N"

    @property
    def generation(self) -> int:
        return self.graphs.generation

    def context(self, graph: str) -> TrtContext:
        """The context ``graph`` runs on now: the step set inside a captured step, else the direct set (made on
        first use, on the executor's scratch)."""
        contexts = self.step_contexts if self._capturing else self.direct
        if graph not in contexts:
            contexts[graph] = self.engines[graph].context(self.scratch)
        return contexts[graph]

    def _direct_or_none(self, graph: str) -> TrtContext | None:
        return self.context(graph) if graph in self.engines else None

    def preprocess(self, rgb: np.ndarray, image: Buf, bgr: bool = False) -> None:
        """The frame into pinned staging (BGR frames swapped to RGB by that same one copy), up, and the GPU
        preprocessing engine into ``image``."""
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
        if bgr:
            cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB, dst=self._frame["frame"].mirror)
        else:
            np.copyto(self._frame["frame"].mirror, rgb)
        self.allocator.upload(self._frame["frame"])
        self.run(self._prep_graph, {**self._frame, "image": image})  # Pillow's pass order for this size

    def _free_frame(self) -> None:
        for buf in self._frame.values():
            self.allocator.free(buf)
        self._frame = {}

    def run(self, graph: str, tensors: dict[str, Buf]) -> None:
        context = self.context(graph)
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
        if not self.rounds:
            return
        scratch = self._round_scratch.view(slot.shape)
        self.run(ROUNDER, {"memory_in": slot, "memory_out": scratch})
        self.allocator.copy(slot, scratch)

    def masks(self, low: np.ndarray, size: tuple[int, int], dtype: type, device: Buf | None = None) -> np.ndarray:
        """(K, 1, h4, h4) logits -> (K, H', W') ``dtype`` masks made by the postprocessing engine; only the masks
        come down. ``device``: the step's ``low_res_masks`` buffer when it holds exactly ``low`` (no hole
        filled), else ``low`` is uploaded (see ``DeviceMasks``)."""
        return self.post(low, size, dtype, device)

    def release(self, buffers: Any) -> None:
        """Free ``buffers`` and the captured graph: it holds addresses that are about to go."""
        self.graphs.drop()
        buffers.free()

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        """Destroy the graph, free every buffer and the scratch, destroy the stream. Idempotent."""
        if self.closed:
            return
        self.graphs.drop()
        self._free_frame()
        self.post.close()
        self.direct, self.step_contexts = {}, {}  # contexts go before the scratch they use
        self.allocator.close()
        self.stream.close()
        self.closed = True


def device_memory_mb() -> dict[str, float]:
    """Device memory in use (for ``sam2rt bench``)."""
    from sam2rt.runtime.backends.cuda import memory_info

    import_cudart()
    return memory_info()
