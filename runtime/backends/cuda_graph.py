"""CUDA graphs: capture a stream's work once, replay it; a cache of them per step key."""

from __future__ import annotations

import weakref
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
        self._finalizer: weakref.finalize | None = None  # destroys both when dropped without close()
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
            cudart.cudaGetLastError()  # clear the sticky capture error so the stream stays usable
            if self._graph is not None:  # captured but not instantiated
                cudart.cudaGraphDestroy(self._graph)
            self._exec = self._graph = None
            return False
        self._finalizer = weakref.finalize(self, _destroy, cudart, self._exec, self._graph)
        return True

    @property
    def ready(self) -> bool:
        return self._exec is not None

    def launch(self) -> None:
        check(self._cudart.cudaGraphLaunch(self._exec, self.stream.raw), "graph launch")

    def close(self) -> None:
        """Destroy the executable graph and the graph (also done when the object is dropped)."""
        if self._finalizer is not None:
            self._finalizer()
        self._exec = self._graph = None


def _destroy(cudart: Any, exec_: Any, graph: Any) -> None:
    cudart.cudaGraphExecDestroy(exec_)
    cudart.cudaGraphDestroy(graph)


class GraphCache:
    """The CUDA graph of a stream's tracking step: one live graph at a time, per (buffer generation, key).

    A key is captured once it has run directly ``settle`` times in a row (default 2: the first run does
    TensorRT's lazy per-shape setup, the second is run and captured), and replayed from then on. Keys that
    keep changing (a bank still filling up its memories in a stream's first frames, when the key carries
    bound shapes) are never captured. Capturing a new key destroys the previous graph first: the step's
    execution contexts are rebound for the new capture, and TensorRT documents changing a context after a
    graph was captured from it as undefined. ``drop`` destroys the graph and moves the generation on, which
    callers do whenever a buffer a graph may hold is freed or reallocated. A failed capture is warned about
    once and that key keeps running directly.

    graph_factory: makes the graph objects (``CudaGraph``; tests pass simulated ones).
    """

    def __init__(self, stream: Any, settle: int = 2,
                 graph_factory: Callable[[Any], Any] | None = None) -> None:
        assert settle >= 1
        self.stream, self.settle = stream, settle
        self._factory = graph_factory or CudaGraph
        self.generation = 0
        self._key: tuple | None = None  # the key of the live (or failed) graph
        self._graph: Any = None
        self._failed: set[tuple] = set()
        self._last: tuple | None = None  # the key of the previous direct run and how often it ran in a row
        self._run = 0
        self.captures = self.replays = 0

    def step(self, key: tuple, enqueue: Callable[[], None]) -> None:
        """Run the step ``enqueue`` puts on the stream for ``key``: replay its graph, or run it (and capture)."""
        key = (self.generation, *key)
        if key == self._key and self._graph is not None:
            self._graph.launch()
            self.replays += 1
            return
        enqueue()
        self._run = self._run + 1 if key == self._last else 1
        self._last = key
        if self._run < self.settle or key in self._failed:
            return
        self._destroy()
        graph = self._factory(self.stream)
        if graph.capture(enqueue):
            self._key, self._graph = key, graph
            self.captures += 1
        else:
            import warnings

            warnings.warn(f"CUDA graph capture failed ({graph.error}); running the tracking step without it",
                          stacklevel=3)
            self._failed.add(key)

    def _destroy(self) -> None:
        if self._graph is not None:
            if self.stream is not None:
                self.stream.synchronize()  # a launched graph may still run
            self._graph.close()
        self._key, self._graph = None, None

    def drop(self) -> None:
        """Destroy the graph (its buffers are about to go) and move the generation on."""
        self._destroy()
        self._failed, self._last, self._run = set(), None, 0
        self.generation += 1

    def __len__(self) -> int:
        return int(self._graph is not None)
