"""Side by side with the official predictor: same weights, same frames, same prompts, per-frame mask IoU.

This is how sam2rt proves its fidelity. It needs the export extra (torch, the official ``sam2``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from sam2rt.errors import Sam2rtError
from sam2rt.export.checkpoints import build_model
from sam2rt.manifest import Manifest

# A scenario step: ("points", frame, obj_id, kwargs) | ("mask", frame, obj_id, mask) |
# ("propagate", kwargs) | ("clear", frame, obj_id) | ("remove", obj_id)
Step = tuple


def official_can_fill_holes() -> bool:
    """The official hole filling needs its CUDA extension; without it the predictor skips the step."""
    try:
        from sam2 import _C  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def _upcast_bf16_memory(module, args, kwargs):
    """CPU only: the official code feeds bf16 memories to fp32 weights when a frame has no pointer.

    On GPU autocast hides it; everywhere else type promotion upcasts, so do the same here.
    """
    up = {k: v.float() if torch.is_tensor(v) and v.dtype == torch.bfloat16 else v for k, v in kwargs.items()}
    return args, up


def official_predictor(manifest: Manifest, checkpoint: Path | None, seed: int | None):
    """The official SAM2VideoPredictor with the weights the model directory was exported from."""
    model, source = build_model(manifest.model_name, manifest.image_size, checkpoint=checkpoint, random_seed=seed)
    exported = manifest.raw["source"]
    if (source.checkpoint_sha256, source.random_seed) != (exported["checkpoint_sha256"], exported["random_seed"]):
        raise Sam2rtError(
            f"{manifest.directory} was exported from {exported}, but the reference was given "
            f"checkpoint sha256={source.checkpoint_sha256} seed={source.random_seed}; pass the same weights"
        )
    if not official_can_fill_holes():
        model.fill_hole_area = 0
    model.memory_attention.register_forward_pre_hook(_upcast_bf16_memory, with_kwargs=True)
    return model


def run_steps(predictor, video: Any, steps: Sequence[Step],
              frame_hook: Callable[[], Any] = contextlib.nullcontext) -> list[tuple[str, int, list, np.ndarray]]:
    """Apply ``steps`` to a predictor with the official API; returns every (step, frame, obj_ids, masks)."""
    objects = {step[2] for step in steps if step[0] in ("points", "mask")}
    if getattr(predictor, "spatial_perceiver", None) is not None and len(objects) > 1:
        raise Sam2rtError(f"the official EdgeTAM predictor cannot track {len(objects)} objects in one run (its "
                          "perceiver encodes one object's memory at a time: upstream EdgeTAM#15); compare one "
                          "object per prompts file (tests/edgetam compare objects one at a time)")
    results = []
    with frame_hook():
        state = predictor.init_state(video)
        for i, step in enumerate(steps):
            kind = step[0]
            if kind == "points":
                f, ids, m = predictor.add_new_points_or_box(state, step[1], step[2], **step[3])
                results.append((f"{i}:points", f, list(ids), to_numpy(m)))
            elif kind == "mask":
                f, ids, m = predictor.add_new_mask(state, step[1], step[2], step[3])
                results.append((f"{i}:mask", f, list(ids), to_numpy(m)))
            elif kind == "propagate":
                for f, ids, m in predictor.propagate_in_video(state, **step[1]):
                    results.append((f"{i}:propagate", f, list(ids), to_numpy(m)))
            elif kind == "clear":
                f, ids, m = predictor.clear_all_prompts_in_frame(state, step[1], step[2])
                results.append((f"{i}:clear", f, list(ids), to_numpy(m)))
            elif kind == "remove":
                predictor.remove_object(state, step[1])
            else:
                raise ValueError(f"unknown step {kind!r}")
    return results


def steps_from_prompts(prompts) -> list[Step]:
    """A prompts file as steps: every prompt, forward propagation, then reverse from the last prompted frame."""
    from sam2rt.prompts_file import read_mask

    steps: list[tuple] = []
    for p in prompts:
        if p.mask is not None:
            steps.append(("mask", p.frame, p.obj_id, read_mask(p.mask, p.where)))
        else:
            kwargs = {"points": [list(x) for x in p.points] if p.points else None,
                      "labels": list(p.labels) if p.labels else None, "box": list(p.box) if p.box else None}
            steps.append(("points", p.frame, p.obj_id, kwargs))
    steps.append(("propagate", {}))
    last = max(p.frame for p in prompts)
    if last > 0:
        steps.append(("propagate", {"start_frame_idx": last, "reverse": True}))
    return steps


def jpeg_folder(video: Path, frames: int | None, tmp: Path) -> Path:
    """The official predictor reads only JPEG folders: extract a video file into one."""
    if video.is_dir():
        return video
    from sam2rt.runtime.frames import extract_jpeg_folder

    return extract_jpeg_folder(video, tmp / "frames", max_frames=frames)


def to_numpy(masks) -> np.ndarray:
    """Masks from either predictor (torch tensor or numpy array) -> numpy."""
    return masks.detach().cpu().numpy() if hasattr(masks, "detach") else np.asarray(masks)


@dataclass
class ParityReport:
    """Per-frame, per-object IoU of the binary masks (logits > 0); both empty counts as 1.

    ``present`` holds (reference non-empty, ours non-empty) per row: with borderline object scores a small
    numeric difference flips presence (IoU 0), so quantized variants are judged on the rows where both
    find the object and the flips are counted apart.
    """

    rows: list[tuple[str, int, Any, float]] = field(default_factory=list)
    max_logit_diff: float = 0.0
    present: list[tuple[bool, bool]] = field(default_factory=list)

    @property
    def ious(self) -> np.ndarray:
        return np.array([r[3] for r in self.rows])

    @property
    def mean_iou(self) -> float:
        return float(self.ious.mean()) if self.rows else float("nan")

    @property
    def min_iou(self) -> float:
        return float(self.ious.min()) if self.rows else float("nan")

    @property
    def presence_disagreements(self) -> int:
        """Rows where exactly one predictor finds the object."""
        return sum(a != b for a, b in self.present)

    @property
    def mean_iou_both_present(self) -> float:
        """Mean IoU over the rows where both predictors find the object (nan if none)."""
        both = [r[3] for r, (a, b) in zip(self.rows, self.present) if a and b]
        return float(np.mean(both)) if both else float("nan")

    def summary(self) -> str:
        return (f"{len(self.rows)} frame-object masks, mean IoU {self.mean_iou:.6f}, min IoU {self.min_iou:.6f}, "
                f"max |logit diff| {self.max_logit_diff:.3e}; where both find the object: mean IoU "
                f"{self.mean_iou_both_present:.6f}, presence disagreements {self.presence_disagreements}")


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def compare(reference: Iterable, ours: Iterable) -> ParityReport:
    """Pair the two result lists step by step and frame by frame."""
    reference, ours = list(reference), list(ours)
    if [(s, f, ids) for s, f, ids, _ in reference] != [(s, f, ids) for s, f, ids, _ in ours]:
        raise AssertionError("the predictors visited different frames or objects")
    report = ParityReport()
    for (step, f, ids, a), (_, _, _, b) in zip(reference, ours):
        finite = (a > -1000) | (b > -1000)  # NO_OBJ_SCORE regions carry no logit information
        if finite.any():
            report.max_logit_diff = max(report.max_logit_diff, float(np.abs(a - b)[finite].max()))
        for k, obj in enumerate(ids):
            report.rows.append((step, f, obj, mask_iou(a[k, 0] > 0, b[k, 0] > 0)))
            report.present.append((bool((a[k, 0] > 0).any()), bool((b[k, 0] > 0).any())))
    return report
