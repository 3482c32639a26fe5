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


def check_frame_limit(max_frame_num_to_track: object) -> None:
    """``max_frame_num_to_track``: None (the whole video) or an integer >= 0."""
    if max_frame_num_to_track is None:
        return
    if not isinstance(max_frame_num_to_track, numbers.Integral) or isinstance(max_frame_num_to_track, bool) \
            or max_frame_num_to_track < 0:
        raise Sam2rtError(f"max_frame_num_to_track must be None or an integer >= 0, got {max_frame_num_to_track!r}")


def check_point_count(labels: np.ndarray, limit: int) -> None:
    """At most ``limit`` clicks (labels 0/1; box corners 2/3 are not counted) per object and frame: the
    decoder's memory grows with the square of the point count (10 000 points: 7 GB)."""
    clicks = int(np.isin(labels, (0, 1)).sum())
    if clicks > limit:
        raise Sam2rtError(f"{clicks} clicks on one object and frame; this model takes at most {limit} (export "
                          "--max-points). Use fewer clicks (a box or a mask prompt describes a large object), or "
                          "re-export with a larger --max-points")


def check_obj_id(obj_id: object) -> None:
    if not isinstance(obj_id, numbers.Integral) or isinstance(obj_id, bool):
        raise Sam2rtError(f"obj_id must be an integer, got {obj_id!r}")


def _array(value: object, what: str, shape_text: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise Sam2rtError(f"{what} must be numbers shaped {shape_text}, got {_short(value)}") from None
    if not np.all(np.isfinite(arr)):
        raise Sam2rtError(f"{what} contains NaN or infinity; pass finite pixel coordinates")
    return arr


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _points(points: object) -> np.ndarray:
    """(N, 2) or the official batched (1, N, 2) -> (N, 2) float64, N >= 1."""
    pts = _array(points, "points", "(N, 2) as [[x, y], ...]")
    if pts.ndim == 3 and pts.shape[0] == 1:
        pts = pts[0]
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
        raise Sam2rtError(f"points must be shaped (N, 2) as [[x, y], ...] with N >= 1, got shape {pts.shape}")
    return pts


def _labels(labels: object, count: int) -> np.ndarray:
    """(N,) or (1, N) of 0/1 -> (N,) int64."""
    try:
        lbl = np.asarray(labels)
    except (TypeError, ValueError, OverflowError):
        lbl = np.asarray([None], dtype=object)
    if lbl.dtype.kind not in "biuf":
        raise Sam2rtError(f"labels must be 1 (positive) or 0 (negative), one per point, got {_short(labels)}")
    if lbl.ndim == 2 and lbl.shape[0] == 1:
        lbl = lbl[0]
    if lbl.ndim != 1 or lbl.size != count:
        raise Sam2rtError(f"got {count} points and labels shaped {lbl.shape}; give one label per point, shaped (N,)")
    if not np.isin(lbl, (0, 1)).all():
        raise Sam2rtError(f"labels must be 1 (positive) or 0 (negative), got {_short(lbl.tolist())}")
    return lbl.astype(np.int64)


def _box(box: object) -> np.ndarray:
    """x0, y0, x1, y1 ((4,), (2, 2) or (1, 4)) -> (2, 2) float64 with the top-left corner first."""
    b = _array(box, "box", "(4,) as x0, y0, x1, y1")
    if b.size != 4:
        raise Sam2rtError(f"box must be 4 numbers x0, y0, x1, y1, got shape {b.shape}")
    x0, y0, x1, y1 = b.reshape(-1)
    if not (x0 < x1 and y0 < y1):
        raise Sam2rtError(f"box {b.reshape(-1).tolist()} must have x0 < x1 and y0 < y1 "
                          "(top-left corner first, then bottom-right)")
    return b.reshape(2, 2)


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
        pts = _points(points)
        lbl = _labels(labels, len(pts))
    if box is not None:
        if not clear_old_points:
            raise Sam2rtError("a box must come before any clicks: pass clear_old_points=True with a box")
        pts, lbl = np.concatenate([_box(box), pts]), np.concatenate([[2, 3], lbl])
    limit = np.array([width, height]) if normalize_coords else None
    if limit is not None and ((pts < 0).any() or (pts > limit).any()):
        raise Sam2rtError(f"points/box {_short(pts.tolist())} fall outside the {width}x{height} frame; "
                          "use pixel coordinates inside it (or normalize_coords=False for model coordinates)")
    if (np.abs(pts) > np.finfo(np.float32).max).any():  # finite in float64, infinite as model input
        raise Sam2rtError(f"points/box {_short(pts.tolist())} are too large to be model coordinates (float32)")
    return pts.astype(np.float32), lbl.astype(np.int32)


def check_mask(mask: object) -> np.ndarray:
    """A 2-D mask prompt -> bool array."""
    try:
        arr = np.asarray(mask)
    except (TypeError, ValueError, OverflowError):
        raise Sam2rtError(f"mask must be a 2-D (H, W) boolean array, got {_short(mask)}") from None
    if arr.ndim != 2 or arr.size == 0:
        raise Sam2rtError(f"mask must be a 2-D (H, W) array, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise Sam2rtError(f"mask must be boolean or 0/1 numbers, got dtype {arr.dtype}")
    if arr.dtype != np.bool_:
        if not np.isin(arr, (0, 1)).all():
            raise Sam2rtError("mask must be boolean or 0/1 valued; threshold probabilities or logits first")
        arr = arr.astype(bool)
    return arr
