"""TensorRT backend: engines, execution contexts and ``TrtRunner`` (the GraphRunner interface).

Engines are deserialised once (after ``engines.cache`` has checked they were built for this GPU, TensorRT
version and exactly these ONNX graphs); each user makes its own execution contexts, every tensor is bound by name
with ``set_tensor_address``; all work goes on one CUDA stream with ``execute_async_v3``. Contexts are created
with TensorRT's user-managed allocation strategy where a caller gives them scratch: every context of one user
(one stream, so one thing at a time) shares one scratch buffer sized by its largest engine, instead of each
holding its own activation memory at the profile maximum. Object and point counts are checked against the
engine profiles before TensorRT sees them. Imports TensorRT when called. The tracker's executor is
``trt_executor.TrtExecutor``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sam2rt import contract as C
from sam2rt.engines.builder import import_tensorrt
from sam2rt.engines.cache import (check_engine_manifest, default_engine_dir, load_engine_manifest, read_engine,
                                  rebuild_command, stored_config)
from sam2rt.engines.profiles import check_within
from sam2rt.errors import Sam2rtError
from sam2rt.manifest import load_manifest
from sam2rt.runtime.backends.runner import GraphRunner
from sam2rt.runtime.backends.cuda import Buf, CudaAllocator, Stream

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

    @property
    def scratch_bytes(self) -> int:
        """Activation memory one context needs at the profile maxima (TensorRT's own figure: ``device_memory_size_v2``
        from 10.1 on, ``device_memory_size`` before)."""
        size = getattr(self.engine, "device_memory_size_v2", None)
        return int(size if size is not None else self.engine.device_memory_size)

    def context(self, scratch: Buf | None = None) -> "TrtContext":
        """A new execution context of this engine, for one user only; ``scratch``: that user's shared scratch
        (user-managed allocation), None for TensorRT's own (static) allocation."""
        return TrtContext(self, scratch)


class TrtContext:
    """One execution context: ``bind`` every tensor by name, ``enqueue`` on a stream.

    Each user (a ``TrtRunner``; an executor's captured step; its direct runs) owns its contexts: a CUDA
    graph replays the kernels and addresses its context was set up with, so no other caller may rebind it.
    """

    def __init__(self, engine: TrtEngine, scratch: Buf | None = None) -> None:
        self.engine, self.name = engine, engine.name
        strategy = getattr(getattr(import_tensorrt(), "ExecutionContextAllocationStrategy", None), "USER_MANAGED", None)
        if scratch is not None and strategy is not None:
            self.context = engine.engine.create_execution_context(strategy)
            if self.context is not None:
                assert scratch.nbytes >= engine.scratch_bytes, f"{engine.name}: scratch too small"
                if hasattr(self.context, "set_device_memory"):  # TensorRT 10.1+
                    self.context.set_device_memory(scratch.ptr, scratch.nbytes)
                else:
                    self.context.device_memory = scratch.ptr
        else:
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


class RunnerSet:
    """What the TrtRunners of one loaded model share, made on first use: one stream, one allocator, one scratch
    (sized by the largest engine; the runners run one at a time on the stream)."""

    def __init__(self, engines: dict[str, TrtEngine]) -> None:
        self.engines = engines
        self.stream: Stream | None = None
        self.allocator: CudaAllocator | None = None
        self.scratch: Buf | None = None

    def open(self) -> tuple[Stream, CudaAllocator, Buf]:
        if self.allocator is None:
            self.stream = Stream()
            self.allocator = CudaAllocator(self.stream)
            size = max(e.scratch_bytes for e in self.engines.values())
            self.scratch = self.allocator.alloc((max(size, 1),), np.uint8)
        return self.stream, self.allocator, self.scratch

    def close(self) -> None:
        if self.allocator is not None:
            self.allocator.close()
            self.stream.close()
        self.stream = self.allocator = self.scratch = None


class TrtRunner(GraphRunner):
    """A graph on TensorRT behind the runner interface: numpy in, numpy out, through pinned staging.

    Nothing is allocated until the first ``run``: then the runner's context (on the set's shared scratch) and
    its device buffers at the profile maxima with pinned mirrors. Each ``run`` copies the feeds up, executes
    and copies the outputs down on the shared stream, then synchronises (outputs are host arrays).
    """

    def __init__(self, spec: C.GraphSpec, image_size: int, engine: TrtEngine, shared: RunnerSet,
                 limits: dict[str, int], rebuild: str) -> None:
        super().__init__(spec, image_size)
        self.device_engine, self.shared, self.limits, self.rebuild = engine, shared, limits, rebuild
        self.engine: TrtContext | None = None
        self._bufs: dict[str, Buf] = {}

    def _open(self) -> None:
        if self.engine is not None:
            return
        self.stream, self.alloc, scratch = self.shared.open()
        self.engine = self.device_engine.context(scratch)  # the runner's own context
        dims = {**self._spatial, **self.limits}
        self._bufs = {t.name: self.alloc.alloc(tuple(int(s) for s in t.resolve(dims)), np.dtype(t.dtype), mirrored=True)
                      for t in self.spec.inputs + self.spec.outputs}

    @property
    def opened(self) -> bool:
        """Whether this runner has made its context and buffers (it has run)."""
        return self.engine is not None

    def _run(self, feeds: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        dims = self._check_feeds(feeds)
        check_within(self.name, dims, self.limits)
        self._open()
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
    """One TrtRunner per graph over one ``RunnerSet`` (engines checked and deserialised once; nothing allocated
    until a runner runs)."""
    engines, cfg = load_engines(model_dir, engine_dir)
    manifest = load_manifest(model_dir)
    shared = RunnerSet({spec.name: engines[spec.name] for spec in C.GRAPHS})
    limits = {"B": cfg.max_objects, "N": cfg.max_points_fed, "M": cfg.memory_slots, "P": cfg.ptr_slots}
    rebuild = rebuild_command(model_dir, engine_dir or default_engine_dir(model_dir), cfg)
    runners: dict[str, GraphRunner] = {
        spec.name: TrtRunner(spec, manifest.image_size, engines[spec.name], shared, limits, rebuild)
        for spec in C.GRAPHS}
    for runner in runners.values():
        runner.device_engines, runner.build_config = engines, cfg  # executors make their own contexts of them
    return runners


def executor_for(runners: dict[str, GraphRunner]) -> Any:
    """A tracker's executor over the engines the TrtRunners deserialised (see ``trt_executor.executor_for``)."""
    from sam2rt.runtime.backends.trt_executor import executor_for as make

    return make(runners)

