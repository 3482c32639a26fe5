"""``--memory sam2|samurai`` and SAMURAI's parameters, shared by track, camera, verify and bench."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

# flag -> SamuraiConfig field
SAMURAI_FLAGS = {
    "--samurai-stable-frames": ("stable_frames", int, "frames of stable IoU before the Kalman filter joins the choice"),
    "--samurai-stable-iou": ("stable_iou", float, "predicted IoU a choice needs to count as stable"),
    "--samurai-kf-weight": ("kf_weight", float, "weight of the Kalman box IoU in the candidate choice"),
    "--samurai-memory-iou": ("memory_iou", float, "predicted IoU a frame needs to be remembered"),
    "--samurai-memory-obj-score": ("memory_obj_score", float, "object score logit a frame needs to be remembered"),
    "--samurai-memory-kf-score": ("memory_kf_score", float, "motion score a frame needs to be remembered"),
    "--samurai-min-obj-score": ("min_obj_score", float, "object score logit above which the object is present"),
}


def add_memory_args(p: argparse.ArgumentParser) -> None:
    """Register --memory and the --samurai-* flags (defaults: SAMURAI's published config of the model)."""
    g = p.add_argument_group("memory", "the tracker's memory (docs/tracker.md)")
    g.add_argument("--memory", default="sam2", choices=("sam2", "samurai"),
                   help="sam2: the official memory (default); samurai: SAMURAI's motion-aware memory "
                        "(Kalman-filtered candidate choice, memory of frames that pass score thresholds)")
    for flag, (_, kind, text) in SAMURAI_FLAGS.items():
        g.add_argument(flag, type=kind, default=None, help=f"{text} (--memory samurai; default: the model's "
                                                           "published SAMURAI config)")


def memory_options(args: argparse.Namespace, model: Path) -> dict[str, Any]:
    """``memory=`` and ``samurai=`` keyword arguments for VideoPredictor / StreamTracker from the flags."""
    from sam2rt.errors import Sam2rtError

    given = {field: getattr(args, flag[2:].replace("-", "_")) for flag, (field, _, _) in SAMURAI_FLAGS.items()}
    given = {k: v for k, v in given.items() if v is not None}
    memory = getattr(args, "memory", "sam2")
    if memory != "samurai":
        if given:
            raise Sam2rtError("--samurai-* flags apply to --memory samurai; add it or drop them")
        return {"memory": memory}
    from sam2rt.manifest import load_manifest
    from sam2rt.runtime.memory_policy import SamuraiConfig

    return {"memory": memory, "samurai": SamuraiConfig.for_model(load_manifest(model).model_name, **given)}
