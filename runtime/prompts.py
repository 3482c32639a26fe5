"""Prompt validation shared by the predictor and the stream tracker.

Every check runs before any state changes, so a rejected call leaves the tracker exactly as it was.
"""

from __future__ import annotations

import numbers

import numpy as np

from sam2rt.errors import Sam2rtError


def check_frame_idx(frame_idx: object, num_frames: int) -> None:
    if not isinstance(frame_idx, numbers.Integral) or isinstance(frame_idx, bool) or not 0 <= frame_idx < num_frames:
        raise Sam2rtError(f"frame_idx {frame_idx!r} is out of range; the video has frames 0..{num_frames - 1}")


def check_obj_id(obj_id: object) -> None:
    if not isinstance(obj_id, numbers.Integral) or isinstance(obj_id, bool):
        raise Sam2rtError(f"obj_id must be an integer, got {obj_id!r}")


def _array(value: object, what: str, shape_text: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise Sam2rtError(f"{what} must be numbers shaped {shape_text}, got {value!r}") from None
    if not np.all(np.isfinite(arr)):
        raise Sam2rtError(f"{what} contains NaN or infinity; pass finite pixel coordinates")
    return arr


def points_and_labels(points, labels, box, clear_old_points: bool, normalize_coords: bool,
                      width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate clicks and an optional box -> ``(N,2) float32`` coordinates and ``(N,) int32`` labels.

    The box becomes two points labelled 2 and 3 placed before the clicks, as in the official predictor.
    """
    if (points is None) != (labels is None):
        raise Sam2rtError("points and labels must be given together (one label per point)")
    if points is None and box is None:
        raise Sam2rtError("empty prompt: give points with labels, a box, or use add_new_mask")
    pts, lbl = np.zeros((0, 2)), np.zeros((0,), np.int64)
    if points is not None:
        pts = _array(points, "points", "(N, 2)").reshape(-1, 2) if np.size(points) else pts
        lbl_raw = np.asarray(labels)
        if lbl_raw.size != len(pts) or len(pts) == 0:
            raise Sam2rtError(f"got {len(pts)} points and {lbl_raw.size} labels; give one label per point")
        if not np.isin(lbl_raw, (0, 1)).all():
            raise Sam2rtError(f"labels must be 1 (positive) or 0 (negative), got {lbl_raw.tolist()}")
        lbl = lbl_raw.reshape(-1).astype(np.int64)
    if box is not None:
        if not clear_old_points:
            raise Sam2rtError("a box must come before any clicks: pass clear_old_points=True with a box")
        b = _array(box, "box", "(4,) as x0, y0, x1, y1")
        if b.size != 4:
            raise Sam2rtError(f"box must be 4 numbers x0, y0, x1, y1, got shape {b.shape}")
        pts, lbl = np.concatenate([b.reshape(2, 2), pts]), np.concatenate([[2, 3], lbl])
    limit = np.array([width, height]) if normalize_coords else None
    if limit is not None and ((pts < 0).any() or (pts > limit).any()):
        raise Sam2rtError(f"points/box {pts.tolist()} fall outside the {width}x{height} frame; "
                          "use pixel coordinates inside it (or normalize_coords=False for model coordinates)")
    return pts.astype(np.float32), lbl.astype(np.int32)


def check_mask(mask: object) -> np.ndarray:
    """A 2-D mask prompt -> bool array."""
    arr = np.asarray(mask)
    if arr.ndim != 2 or arr.size == 0:
        raise Sam2rtError(f"mask must be a 2-D (H, W) array, got shape {arr.shape}")
    if arr.dtype != np.bool_:
        if not np.isin(arr, (0, 1)).all():
            raise Sam2rtError("mask must be boolean or 0/1 valued; threshold probabilities or logits first")
        arr = arr.astype(bool)
    return arr
