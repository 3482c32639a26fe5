"""A CPU stand-in for cuda-python and TensorRT, faithful where the live path depends on their semantics.

``FakeCudart``: device and pinned memory are numpy arrays at real addresses; copies and memsets are executed
at once, or recorded while a stream captures (``cudaStreamBeginCapture``) and run again by ``cudaGraphLaunch``
with the addresses recorded then, as a CUDA graph does. It counts live allocations, streams, events and graphs,
and remembers freed memory (a replay into it is not an error on a GPU either: the result is just wrong).
``FakeTensorRT`` engines run a numpy function on the addresses bound to their context when enqueued (or when
the captured graph replays). ``fake_graphs.FakeGraphs`` are cheap numpy "graphs" of the four SAM 2 graphs.
Used by the executor, leak and GPU-check tests; ``install`` patches them in.
"""

from __future__ import annotations

import ctypes
import types
from typing import Any, Callable

import numpy as np

from fake_graphs import FakeGraphs
from sam2rt import contract as C
from sam2rt.runtime.imageops import bf16_round_, preprocess_official


class FakeCudart:
    """The cuda-python runtime calls sam2rt makes, on host memory (see the module docstring)."""

    class cudaError_t:  # noqa: N801 - cuda-python's names
        cudaSuccess = 0

    class cudaMemcpyKind:  # noqa: N801
        cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice = 1, 2, 3

    class cudaStreamCaptureMode:  # noqa: N801
        cudaStreamCaptureModeThreadLocal = 0

    cudaStreamNonBlocking = 1

    def __init__(self) -> None:
        self.memory: dict[int, np.ndarray] = {}  # live allocations by address
        self.device: set[int] = set()
        self.pinned: set[int] = set()
        self.freed: list[np.ndarray] = []  # kept alive: a stale graph may still write there
        self.streams: set[int] = set()
        self.events: set[int] = set()
        # recorded work: (signature, op); the signature names the addresses the op uses
        self.graphs: dict[int, list[tuple[tuple, Callable[[], None]]]] = {}
        self.execs: dict[int, list[tuple[tuple, Callable[[], None]]]] = {}
        self.capturing: dict[int, list[tuple[tuple, Callable[[], None]]]] = {}
        self._next = 1

    def live(self) -> dict[str, int]:
        """What is held now: device/pinned allocations, streams, events, graphs."""
        return {"device": len(self.device), "pinned": len(self.pinned), "streams": len(self.streams),
                "events": len(self.events), "graphs": len(self.graphs) + len(self.execs)}

    def _id(self) -> int:
        self._next += 1
        return self._next

    def _alloc(self, n: int, pool: set[int]) -> tuple[int, int]:
        a = np.zeros(max(n, 1) + 256, np.uint8)
        ptr = (a.ctypes.data + 255) // 256 * 256  # 256-byte aligned, as cudaMalloc
        self.memory[ptr] = a
        pool.add(ptr)
        return 0, ptr

    def _free(self, ptr: int, pool: set[int]) -> tuple[int]:
        if ptr not in pool:
            return (1,)
        pool.discard(ptr)
        self.freed.append(self.memory.pop(ptr))
        return (0,)

    def enqueue(self, stream: Any, op: Callable[[], None], sig: tuple) -> None:
        """Run ``op`` now, or record it (with its signature) when ``stream`` captures."""
        if int(stream) in self.capturing:
            self.capturing[int(stream)].append((sig, op))
        else:
            op()

    # memory
    def cudaMalloc(self, n):  # noqa: N802
        return self._alloc(n, self.device)

    def cudaMallocHost(self, n):  # noqa: N802
        return self._alloc(n, self.pinned)

    def cudaFree(self, ptr):  # noqa: N802
        return self._free(ptr, self.device)

    def cudaFreeHost(self, ptr):  # noqa: N802
        return self._free(ptr, self.pinned)

    def cudaMemsetAsync(self, ptr, value, n, stream):  # noqa: N802
        self.enqueue(stream, lambda: ctypes.memset(ptr, value, n), ("memset", ptr, n))
        return (0,)

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):  # noqa: N802
        self.enqueue(stream, lambda: ctypes.memmove(dst, src, n), ("copy", dst, src, n))
        return (0,)

    def cudaMemGetInfo(self):  # noqa: N802
        return 0, 1 << 30, 2 << 30

    # streams, events, graphs
    def cudaStreamCreateWithFlags(self, flags):  # noqa: N802
        handle = self._id()
        self.streams.add(handle)
        return 0, handle

    def cudaStreamDestroy(self, stream):  # noqa: N802
        self.streams.discard(int(stream))
        return (0,)

    def cudaStreamSynchronize(self, stream):  # noqa: N802
        return (0,)

    def cudaEventCreate(self):  # noqa: N802
        handle = self._id()
        self.events.add(handle)
        return 0, handle

    def cudaEventDestroy(self, event):  # noqa: N802
        self.events.discard(int(event))
        return (0,)

    def cudaEventRecord(self, event, stream):  # noqa: N802
        return (0,)

    def cudaEventSynchronize(self, event):  # noqa: N802
        return (0,)

    def cudaEventElapsedTime(self, start, end):  # noqa: N802
        return 0, 0.0

    def cudaStreamBeginCapture(self, stream, mode):  # noqa: N802
        self.capturing[int(stream)] = []
        return (0,)

    def cudaStreamEndCapture(self, stream):  # noqa: N802
        handle = self._id()
        self.graphs[handle] = self.capturing.pop(int(stream))
        return 0, handle

    def cudaGraphInstantiate(self, graph, flags):  # noqa: N802
        handle = self._id()
        self.execs[handle] = list(self.graphs[graph])
        return 0, handle

    def cudaGraphLaunch(self, exec_, stream):  # noqa: N802
        for sig, op in self.execs[exec_]:
            self.enqueue(stream, op, sig)
        return (0,)

    def cudaGraphExecDestroy(self, exec_):  # noqa: N802
        self.execs.pop(exec_)
        return (0,)

    def cudaGraphDestroy(self, graph):  # noqa: N802
        self.graphs.pop(graph)
        return (0,)

    def cudaGetLastError(self):  # noqa: N802
        return (0,)

    def cudaGetErrorString(self, err):  # noqa: N802
        return 0, b"fake error"

    def cudaGetDeviceProperties(self, device):  # noqa: N802
        return 0, types.SimpleNamespace(name=b"Fake GPU", major=9, minor=0)


def _array(ptr: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    raw = (ctypes.c_byte * max(n * dtype.itemsize, 1)).from_address(ptr)
    return np.frombuffer(raw, dtype=dtype, count=n).reshape(shape)


class FakeEngine:
    """A deserialised engine: tensor names/modes/dtypes, profile maxima, scratch size, and ``fn`` (inputs dict ->
    outputs dict of numpy arrays) run on the bound addresses."""

    def __init__(self, cudart: FakeCudart, name: str, inputs: dict[str, str], outputs: dict[str, str],
                 fn: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]], scratch: int,
                 max_shapes: dict[str, tuple[int, ...]] | None = None) -> None:
        self.cudart, self.name, self.fn, self.device_memory_size_v2 = cudart, name, fn, scratch
        self.inputs, self.outputs = inputs, outputs
        self.num_io_tensors = len(inputs) + len(outputs)
        self.max_shapes = max_shapes or {}
        self.contexts: list[FakeContext] = []

    def get_tensor_name(self, i: int) -> str:
        return [*self.inputs, *self.outputs][i]

    def get_tensor_mode(self, name: str) -> str:
        return "INPUT" if name in self.inputs else "OUTPUT"

    def get_tensor_profile_shape(self, name: str, profile: int) -> tuple:
        shape = self.max_shapes[name]
        return (shape, shape, shape)

    def create_execution_context(self, strategy: Any = "STATIC") -> "FakeContext":
        ctx = FakeContext(self, strategy)
        self.contexts.append(ctx)
        return ctx


class FakeContext:
    """An execution context: shapes and addresses by name; ``execute_async_v3`` runs (or records) the engine on
    the addresses bound at that moment."""

    def __init__(self, engine: FakeEngine, strategy: Any) -> None:
        self.engine, self.strategy = engine, strategy
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.scratch: tuple[int, int] | None = None
        self.binds = 0

    def set_device_memory(self, ptr: int, size: int) -> None:
        assert size >= self.engine.device_memory_size_v2
        self.scratch = (ptr, size)

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.shapes[name] = tuple(shape)
        return name in self.engine.inputs

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = int(ptr)
        self.binds += 1
        return name in self.engine.inputs or name in self.engine.outputs

    def execute_async_v3(self, stream: int) -> bool:
        if self.strategy == "USER_MANAGED":
            assert self.scratch is not None, "a user-managed context ran without scratch"
        eng = self.engine
        bound = {n: (self.addresses[n], self.shapes[n], dt) for n, dt in eng.inputs.items()}
        outs = {n: self.addresses[n] for n in eng.outputs}

        def op() -> None:
            feeds = {n: _array(p, s, dt) for n, (p, s, dt) in bound.items()}
            for n, value in eng.fn(feeds).items():
                np.copyto(_array(outs[n], value.shape, eng.outputs[n]), value)

        sig = ("trt", eng.name, tuple(sorted((n, p, s) for n, (p, s, _) in bound.items())), tuple(sorted(outs.items())))
        eng.cudart.enqueue(stream, op, sig)
        return True


FakeTensorRT = types.SimpleNamespace(
    TensorIOMode=types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT"),
    ExecutionContextAllocationStrategy=types.SimpleNamespace(STATIC="STATIC", USER_MANAGED="USER_MANAGED"),
)


class FakeRuntime:
    """``trt.Runtime``: 'deserialises' engines made beforehand, looked up by their bytes (the engine name)."""

    def __init__(self, engines: dict[str, FakeEngine]) -> None:
        self.engines = engines

    def deserialize_cuda_engine(self, data: bytes) -> FakeEngine | None:
        return self.engines.get(data.decode())


def fake_engines(cudart: FakeCudart, graphs: FakeGraphs, max_objects: int = 4,
                 scratch: dict[str, int] | None = None) -> dict[str, FakeEngine]:
    """The engines of a model directory (four graphs, two preprocessing orders, postprocessing) and the bf16
    rounder, as FakeEngines. ``scratch``: bytes per engine (default: 1 KiB x position)."""
    S = graphs.S
    specs = list(C.GRAPHS) + list(C.PREPROCESS_GRAPHS) + [C.POSTPROCESS]
    sizes = scratch or {spec.name: 1024 * (i + 1) for i, spec in enumerate(specs)}

    def prep(f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:  # what the engine is checked to compute
        return {"image": preprocess_official(f["frame"], S)}

    def post(f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"masks": (f["resize_rows"] @ f["low_res_masks"] @ f["resize_cols"])[:, 0] > 0}

    def rounder(f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"memory_out": bf16_round_(f["memory_in"].copy())}

    fns: dict[str, Callable] = {spec.name: graphs.fn(spec.name) for spec in C.GRAPHS}
    fns.update({spec.name: prep for spec in C.PREPROCESS_GRAPHS}, **{C.POSTPROCESS.name: post})
    engines = {spec.name: FakeEngine(cudart, spec.name, {t.name: t.dtype for t in spec.inputs},
                                     {t.name: t.dtype for t in spec.outputs}, fns[spec.name], sizes[spec.name])
               for spec in specs}
    hw = graphs.h ** 2
    engines["bf16_round"] = FakeEngine(cudart, "bf16_round", {"memory_in": "float32"}, {"memory_out": "float32"},
                                       rounder, sizes.get("bf16_round", 512),
                                       {"memory_in": (max_objects, hw, C.MEM_DIM)})
    return engines


def install(monkeypatch: Any, cudart: FakeCudart) -> None:
    """Patch the fake CUDA runtime and TensorRT module into sam2rt."""
    from sam2rt.runtime.backends import cuda, cuda_graph, trt, trt_executor

    for module in (cuda, cuda_graph, trt_executor):
        monkeypatch.setattr(module, "import_cudart", lambda: cudart)
    monkeypatch.setattr(trt, "import_tensorrt", lambda: FakeTensorRT)
    monkeypatch.setattr(trt_executor, "import_tensorrt", lambda: FakeTensorRT)


def trt_engines(engines: dict[str, FakeEngine]) -> dict[str, Any]:
    """sam2rt TrtEngine objects over the fakes (deserialised through ``FakeRuntime``)."""
    from sam2rt.runtime.backends.trt import TrtEngine

    runtime = FakeRuntime(engines)
    return {name: TrtEngine(runtime, name.encode(), name, "sam2rt build MODEL") for name in engines}
