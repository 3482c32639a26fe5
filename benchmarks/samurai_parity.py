"""``sam2rt verify --memory samurai``: our SAMURAI memory against SAMURAI's own predictor, per object.

SAMURAI's predictor (PyPI ``absolutely-not-samurai``, its fork of sam2) collides with ``sam2==1.1.0``, so it
runs in its own virtual environment (``make samurai-env`` -> .venv-samurai) as a subprocess
(``samurai_reference.py``) that writes its masks to a file. It keeps one Kalman filter in the model, so it
runs once per object; ours tracks all objects together (objects are independent). Click prompts on frame 0
only: the reference tracks forward from its prompt, and our ``VideoPredictor`` adds every prompt first.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sam2rt.benchmarks.parity import ParityReport, mask_iou
from sam2rt.errors import Sam2rtError
from sam2rt.manifest import Manifest

SCRIPT = Path(__file__).with_name("samurai_reference.py")
CONFIGS = {"sam2.1_hiera_tiny": "t", "sam2.1_hiera_small": "s", "sam2.1_hiera_base_plus": "b+",
           "sam2.1_hiera_large": "l"}
# our SamuraiConfig fields -> the reference's model keys
REFERENCE_KEYS = {"stable_frames": "stable_frames_threshold", "stable_iou": "stable_ious_threshold",
                  "kf_weight": "kf_score_weight", "memory_iou": "memory_bank_iou_threshold",
                  "memory_obj_score": "memory_bank_obj_score_threshold",
                  "memory_kf_score": "memory_bank_kf_score_threshold", "min_obj_score": "min_obj_score_logits"}


def reference_job(manifest: Manifest, checkpoint: Path, frames: Path, num_frames: int, prompts: list[dict],
                  samurai: Any) -> dict[str, Any]:
    """The job file of one reference run (one object; prompts: [{"frame", "points", "labels"}])."""
    if manifest.model_name not in CONFIGS:
        raise Sam2rtError(f"SAMURAI publishes configs for {sorted(CONFIGS)}; {manifest.model_name} has none")
    return {"checkpoint": str(checkpoint), "image_size": manifest.image_size, "frames": str(frames),
            "num_frames": num_frames, "prompts": prompts,
            "config": f"configs/samurai/sam2.1_hiera_{CONFIGS[manifest.model_name]}.yaml",
            "overrides": [f"++model.{REFERENCE_KEYS[k]}={v}" for k, v in vars(samurai).items()]}


def run_reference(python: Path, job: dict[str, Any], out: Path) -> dict[str, np.ndarray]:
    """Run SAMURAI's predictor in its venv: masks (T, H, W) bool, memory (T, 7) frames read, iou (T,)."""
    if not Path(python).exists():
        raise Sam2rtError(f"{python} does not exist: SAMURAI's reference venv is made by `make samurai-env` "
                          "(or pass --samurai-python)")
    out.with_suffix(".json").write_text(json.dumps(job))
    done = subprocess.run([str(python), str(SCRIPT), str(out.with_suffix(".json")), str(out)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise Sam2rtError(f"SAMURAI's reference failed:\n{done.stderr[-2000:]}")
    data = np.load(out)
    shape = tuple(data["shape"])
    return {"masks": np.unpackbits(data["masks"], axis=-1, count=shape[-1]).astype(bool),
            "memory": data["memory"], "iou": data["iou"]}


def verify_samurai(manifest: Manifest, checkpoint: Path, frames: Path, prompts: Sequence[Any], python: Path,
                   samurai: Any, backend: str = "ort", threads: int = 0) -> ParityReport:
    """Per-frame, per-object IoU of ours (memory="samurai") against the reference run once per object."""
    from sam2rt.runtime.predictor import VideoPredictor

    ids = [p.obj_id for p in prompts]
    if any(p.frame != 0 or p.mask is not None or p.box is not None for p in prompts) or len(set(ids)) != len(ids):
        raise Sam2rtError("verify --memory samurai takes one click prompt per object, on frame 0 (SAMURAI's "
                          "reference tracks forward from its prompt); drop later, box and mask prompts")
    ours = VideoPredictor(manifest.directory, backend=backend, threads=threads, fill_hole_area=0, progress=False,
                          memory="samurai", samurai=samurai)
    state = ours.init_state(str(frames))
    for p in prompts:
        ours.add_new_points_or_box(state, 0, p.obj_id, points=np.array(p.points, np.float32),
                                   labels=np.array(p.labels, np.int32))
    masks = {f: m[:, 0] > 0 for f, _, m in ours.propagate_in_video(state)}
    report = ParityReport()
    with tempfile.TemporaryDirectory() as tmp:
        for k, obj in enumerate(state["obj_ids"]):
            clicks = [{"frame": 0, "points": [list(x) for x in p.points], "labels": list(p.labels)}
                      for p in prompts if p.obj_id == obj]
            job = reference_job(manifest, checkpoint, frames, state["num_frames"], clicks, samurai)
            ref = run_reference(python, job, Path(tmp) / f"ref{k}.npz")
            for f in sorted(masks):
                report.rows.append(("propagate", f, obj, mask_iou(ref["masks"][f], masks[f][k])))
                report.present.append((bool(ref["masks"][f].any()), bool(masks[f][k].any())))
    return report
