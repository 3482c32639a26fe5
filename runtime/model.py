"""Many cameras, one model: ``load(model_dir, backend=...) -> Model`` and ``Model.stream() -> StreamTracker``.

The graphs (ONNX Runtime sessions, or deserialised TensorRT engines) are loaded once per process; each stream
has its own resident bank and step buffers (and, on TensorRT, its own CUDA stream, execution contexts and
captured graphs), so streams are independent. Within a stream every graph runs once per frame for all of its
objects (batch = objects). Use one stream per thread at a time; streams may be driven from different threads
on TensorRT (separate contexts and CUDA streams), and in turn on ONNX Runtime CPU (which shares sessions).
"""

from __future__ import annotations

from pathlib import Path

from sam2rt.runtime.backends.executor import FRAME_TENSORS, OBJECT_TENSORS, default_executor, planned_bytes
from sam2rt.runtime.engine import Engine
from sam2rt.runtime.stream import StreamTracker


class Model:
    """An exported model loaded once; ``stream()`` opens an independent live tracker on it.

    model_dir: an exported model (``sam2rt export``); backend: "ort", "ort-gpu" or "trt" (engines in
    ``engine_dir``, default MODEL_DIR/engines); threads: ONNX Runtime intra-op threads (0 = default).
    """

    def __init__(self, model_dir: str | Path, backend: str = "ort", threads: int = 0,
                 engine_dir: str | Path | None = None) -> None:
        self.backend = backend
        self.engine = Engine(model_dir, backend=backend, threads=threads, engine_dir=engine_dir)

    @property
    def image_size(self) -> int:
        return self.engine.size

    def stream(self, fill_hole_area: int | None = None, bgr: bool = False,
               preprocess: str = "official") -> StreamTracker:
        """A new StreamTracker sharing this model's graphs (its own bank and buffers).

        preprocess: "official" (bit-exact, the default; what TensorRT does on the GPU) or "fast" (OpenCV,
        ONNX Runtime backends only).
        """
        executor = default_executor(self.engine.runners, self.engine.size, self.backend, preprocess)
        return StreamTracker(engine=self.engine, executor=executor, fill_hole_area=fill_hole_area, bgr=bgr)

    def stream_bytes(self, objects: int = 1, points: int = 18) -> int:
        """Buffer bytes one stream holds with ``objects`` objects (frame, bank + step, prompt buffers).

        On TensorRT this is device memory (plus the same again pinned for the mirrored part); the execution
        contexts' activation memory comes on top. E.g. 256 px, 1 object: see docs/tracker.md.
        """
        bank = self.engine.manifest.bank
        dims = {**self.engine.manifest.dims, "M": bank.memory_slots, "P": bank.ptr_slots}
        return (planned_bytes(FRAME_TENSORS, dims) + planned_bytes(OBJECT_TENSORS, {**dims, "B": objects, "N": 1})
                + planned_bytes(OBJECT_TENSORS, {**dims, "B": 1, "N": points}))


def load(model_dir: str | Path, backend: str = "ort", threads: int = 0,
         engine_dir: str | Path | None = None) -> Model:
    """Load an exported model once for any number of streams: ``sam2rt.load(d).stream()``."""
    return Model(model_dir, backend=backend, threads=threads, engine_dir=engine_dir)
