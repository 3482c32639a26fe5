"""CUDA graphs: capture a stream's work once, replay it; a cache of them per step key."""

from __future__ import annotations

from typing import Any, Callable

from sam2rt.errors import Sam2rtError
from sam2rt.runtime.backends.cuda import Stream, check, import_cudart


class CudaGraph:
    """Capture the work ``enqueue`` puts on a stream as a CUDA graph, then replay it with ``launch``.

    ``capture`` returns False (and leaves the stream usable) when capture or instantiation fails, e.g. an
    engine whose kernels cannot be captured: callers then keep running ``enqueue`` directly.
    """

    def __init__(self, stream: Stream) -> None:
        self._cudart = import_cudart()
        self.stream = stream
        self._graph: Any = None
        self._exec: Any = None
        self.error: str | None = None

    def capture(self, enqueue: Callable[[], None]) -> bool:
        cudart = self._cudart
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        try:
            check(cudart.cudaStreamBeginCapture(self.stream.raw, mode), "stream capture begin")
            try:
                enqueue()
            finally:
                graph = check(cudart.cudaStreamEndCapture(self.stream.raw), "stream capture end")
            self._graph = graph
            self._exec = check(cudart.cudaGraphInstantiate(graph, 0), "graph instantiation")
        except Sam2rtError as e:
            self.error = str(e)
            self._exec = None
            cudart.cudaGetLastError()  # clear the sticky capture error so the stream stays usable
            return False
        return True

    @property
    def ready(self) -> bool:
        return self._exec is not None

    def launch(self) -> None:
        check(self._cudart.cudaGraphLaunch(self._exec, self.stream.raw), "graph launch")

    def close(self) -> None:
        if self._exec is not None:
            self._cudart.cudaGraphExecDestroy(self._exec)
        if self._graph is not None:
            self._cudart.cudaGraphDestroy(self._graph)
        self._exec = self._graph = None


class GraphCache:
    """CUDA graphs of a step, one per (buffer generation, key): captured the second time a key runs (the first
    run does TensorRT's lazy per-shape setup), replayed from then on; ``drop`` destroys them all and moves the
    generation on, which callers do whenever a buffer a graph may hold is freed or reallocated. A failed capture
    is warned about once and the key keeps running directly.
    """

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.generation = 0
        self._graphs: dict[tuple, CudaGraph | None] = {}
        self._seen: set[tuple] = set()
        self.captures = self.replays = 0

    def step(self, key: tuple, enqueue: Callable[[], None]) -> None:
        key = (self.generation, *key)
        graph = self._graphs.get(key)
        if graph is not None and graph.ready:
            graph.launch()
            self.replays += 1
            return
        enqueue()
        if key in self._graphs or key in self._seen:
            return
        self._seen.add(key)
        graph = CudaGraph(self.stream)
        if graph.capture(enqueue):
            self._graphs[key] = graph
            self.captures += 1
        else:
            import warnings

            warnings.warn(f"CUDA graph capture failed ({graph.error}); running the tracking step without it",
                          stacklevel=3)
            self._graphs[key] = None

    def drop(self) -> None:
        self.stream.synchronize()
        for graph in self._graphs.values():
            if graph is not None:
                graph.close()
        self._graphs, self._seen = {}, set()
        self.generation += 1

    def __len__(self) -> int:
        return sum(g is not None for g in self._graphs.values())
