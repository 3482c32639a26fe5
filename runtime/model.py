"""Many cameras, one model: ``load(model_dir, backend=...) -> Model`` and ``Model.stream() -> StreamTracker``.

The graphs (ONNX Runtime sessions, or deserialised TensorRT engines) are loaded once per process; each stream
has its own resident bank and step buffers (and, on TensorRT, its own CUDA stream, execution contexts and
captured graphs), so streams are independent. Within a stream every graph runs once per frame for all of its
objects (batch = objects). Use one stream per thread at a time; streams may be driven from different threads
on TensorRT (separate contexts and CUDA streams), and in turn on ONNX Runtime CPU (which shares sessions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sam2rt import contract as C
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

    def close(self) -> None:
        """Free what the model's own runners allocated (TensorRT: made only if ``VideoPredictor``-style runs
        used them); streams are closed by their own ``close``."""
        for runner in self.engine.runners.values():
            shared = getattr(runner, "shared", None)
            if shared is not None:
                shared.close()

    def stream_bytes(self, objects: int = 1, points: int = 18) -> int:
        """Buffer bytes one stream holds with ``objects`` objects (frame, bank + step, prompt buffers).

        On TensorRT this is device memory (plus the same again pinned for the mirrored part); the execution
        contexts' activation memory comes on top. E.g. 256 px, 1 object: see docs/tracker.md.
        """
        bank = self.engine.manifest.bank
        dims = {**C.resolve_dims(self.engine.size), "M": bank.memory_slots, "P": bank.ptr_slots}
        return (planned_bytes(FRAME_TENSORS, dims) + planned_bytes(OBJECT_TENSORS, {**dims, "B": objects, "N": 1})
                + planned_bytes(OBJECT_TENSORS, {**dims, "B": 1, "N": points}))


def stream_device_bytes(image_size: int, bank: C.BankConfig, objects: int, frame: tuple[int, int],
                        points: int, rounder_objects: int) -> dict[str, int]:
    """Device and pinned bytes of one live stream's buffers on TensorRT (what ``TrtExecutor`` allocates besides
    its scratch): frame, bank and step buffers for ``objects``, prompt buffers for ``points``, the uint8 frame
    and its resize weights, the bf16 rounder's output, the device masks at ``frame`` size (H, W)."""
    dims = {**C.resolve_dims(image_size), "M": bank.memory_slots, "P": bank.ptr_slots}
    H, W = frame
    S, h4, hw = dims["S"], dims["h4"], dims["hw"]
    from sam2rt.engines.preprocess import resize_inputs

    staging = H * W * 3 + sum(v.nbytes for v in resize_inputs(H, W, S).feeds.values())  # frame + resize feeds
    masks = objects * (H * W + 4 * h4 * h4) + 4 * (H * h4 + h4 * W)  # masks, uploaded logits, weights
    device = (planned_bytes(FRAME_TENSORS, dims) + planned_bytes(OBJECT_TENSORS, {**dims, "B": objects, "N": 1})
              + planned_bytes(OBJECT_TENSORS, {**dims, "B": 1, "N": points}) + staging + masks
              + 4 * rounder_objects * hw * C.MEM_DIM)
    return {"device": device, "pinned": staging + masks}  # pinned: an upper bound (mirrored buffers only)


def memory_estimate(engines: dict[str, Any], weight_bytes: int, image_size: int, bank: C.BankConfig,
                    objects: int, frame: tuple[int, int], max_objects: int, points: int) -> dict[str, float]:
    """MiB one process with one live stream needs on TensorRT, from the engines' own figures.

    engines: name -> TrtEngine (its ``scratch_bytes`` is TensorRT's ``device_memory_size_v2``); weight_bytes:
    the engine files' bytes (their weights, loaded once per process). A stream's executor holds one scratch
    (its largest engine) and its buffers (``stream_device_bytes``); every further stream adds both again.
    """
    mib = 1 / 2**20
    scratch = max(e.scratch_bytes for e in engines.values())
    buffers = stream_device_bytes(image_size, bank, objects, frame, points, max_objects)
    return {"engines_mib": weight_bytes * mib, "scratch_per_stream_mib": scratch * mib,
            "buffers_per_stream_mib": buffers["device"] * mib, "pinned_per_stream_mib": buffers["pinned"] * mib,
            "one_stream_mib": (weight_bytes + scratch + buffers["device"]) * mib,
            "objects": objects, "frame": f"{frame[1]}x{frame[0]}"}


def engine_memory(model_dir: str | Path, engine_dir: str | Path | None = None, objects: int | None = None,
                  frame: tuple[int, int] = (1080, 1920)) -> dict[str, float]:
    """``memory_estimate`` for a model's built engines (deserialised here; needs TensorRT and the GPU)."""
    from sam2rt.engines.cache import default_engine_dir
    from sam2rt.runtime.backends.trt import load_engines

    engines, cfg = load_engines(model_dir, engine_dir)
    directory = Path(engine_dir) if engine_dir is not None else default_engine_dir(model_dir)
    weights = sum(p.stat().st_size for p in directory.glob("*.engine"))
    from sam2rt.manifest import load_manifest

    manifest = load_manifest(model_dir)
    return memory_estimate(engines, weights, manifest.image_size, manifest.bank, objects or cfg.max_objects,
                           frame, cfg.max_objects, cfg.max_points_fed)


def load(model_dir: str | Path, backend: str = "ort", threads: int = 0,
         engine_dir: str | Path | None = None) -> Model:
    """Load an exported model once for any number of streams: ``sam2rt.load(d).stream()``."""
    return Model(model_dir, backend=backend, threads=threads, engine_dir=engine_dir)
