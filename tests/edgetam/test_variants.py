"""EdgeTAM's precision variants and TensorRT readiness: the graph lint finds nothing in the FP32, FP16 and
int8-cpu graphs, and the variants track like FP32 (where both find the object) on real frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FRAMES = 8
CLICKS = [((300, 300), 1), ((650, 300), 2)]


@pytest.fixture(scope="module")
def variants(edgetam_forced: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    # the forced score head: with plain seed-0 weights no object is ever found, which would leave no frame to judge
    edgetam_256 = edgetam_forced[0]
    from sam2rt.calibration.fp16 import convert_model
    from sam2rt.calibration.int8_cpu import convert_int8_cpu

    out = tmp_path_factory.mktemp("edgetam_variants")
    convert_model(edgetam_256, out / "fp16", log=lambda _: None)
    convert_int8_cpu(edgetam_256, out / "int8cpu", log=lambda _: None)
    return {"fp32": edgetam_256, "fp16": out / "fp16", "int8-cpu": out / "int8cpu"}


def test_lint_finds_nothing(variants: dict[str, Path]) -> None:
    from sam2rt.engines.lint import lint_model_dir

    for name in ("fp32", "fp16"):  # int8-cpu is for ONNX Runtime only: `sam2rt build` refuses it
        violations = lint_model_dir(variants[name])
        assert violations == [], f"{name}: {violations[:3]}"


def _track(model_dir: Path, frames: list[np.ndarray]) -> list[np.ndarray]:
    from sam2rt.runtime.stream import StreamTracker

    tracker = StreamTracker(model_dir, threads=1)
    tracker.load_first_frame(frames[0])
    out = []
    for (x, y), obj_id in CLICKS:
        _, _, logits = tracker.add_new_prompt(0, obj_id, points=[[x, y]], labels=[1])
    out.append(logits)
    for frame in frames[1:]:
        out.append(tracker.track(frame)[1])
    return out


def test_variants_track_like_fp32(variants: dict[str, Path], shared_data: Path) -> None:
    from PIL import Image

    src = shared_data / "videos" / "bedroom_frames"
    frames = [np.array(Image.open(src / f"{i:05d}.jpg").convert("RGB")) for i in range(FRAMES)]
    ref = _track(variants["fp32"], frames)
    for name in ("fp16", "int8-cpu"):
        ious = []
        for a, b in zip(_track(variants[name], frames), ref):
            for k in range(a.shape[0]):
                inter, union = np.logical_and(a[k] > 0, b[k] > 0).sum(), np.logical_or(a[k] > 0, b[k] > 0).sum()
                if (a[k] > 0).any() and (b[k] > 0).any():
                    ious.append(inter / union)
        print(f"\n{name} vs fp32: {len(ious)} object-frames where both find the object, "
              f"mean IoU {np.mean(ious):.4f}, min {np.min(ious):.4f}")
        assert len(ious) >= FRAMES and np.mean(ious) >= 0.97
