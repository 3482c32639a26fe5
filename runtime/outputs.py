"""Outputs a robot can use, made from the low-res logits without full-size float32 logits.

``make_result`` turns the (K, 1, 4h, 4h) low-res logits of a step into a :class:`TrackResult`: boolean or uint8
masks at the video size or any size (bilinear interpolation evaluated a block of rows at a time and
thresholded at once, so only a (rows, W) float block exists), the object score and presence per object, and
each mask's bounding box. The thresholded masks equal ``to_video_res(logits) > 0`` (the official output)
except where an interpolated logit is within float rounding of 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from sam2rt.errors import Sam2rtError

ROWS = 64  # rows interpolated at a time: bounds the float temporary to (ROWS, W)


@dataclass(frozen=True)
class TrackResult:
    """One frame's result for K objects.

    masks: (K, H', W') bool or uint8 (0/1) at ``mask_size`` (default the video size).
    low_res_logits: (K, 1, 4h, 4h) float32 (holes filled, as stored).
    scores: (K,) float32 object score logits; present: (K,) bool, scores > 0.
    boxes: (K, 4) int32 x0, y0, x1, y1 (inclusive) of each mask at mask_size; -1 where the mask is empty.
    """

    frame_idx: int
    obj_ids: list[int]
    masks: np.ndarray
    low_res_logits: np.ndarray
    scores: np.ndarray
    present: np.ndarray
    boxes: np.ndarray


@lru_cache(maxsize=16)
def _taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear (align_corners=False, no antialias) source indices and weights per output index."""
    scale = in_size / out_size
    src = np.maximum((np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    w1 = (src - i0).astype(np.float32)
    return i0, i1, (1.0 - w1).astype(np.float32), w1


def threshold_resize(low: np.ndarray, size: tuple[int, int], dtype: type = bool) -> np.ndarray:
    """(K, 1, h, w) logits -> (K, H, W) ``dtype`` masks of ``logits resized bilinearly > 0``."""
    K, (H, W) = low.shape[0], size
    r0, r1, rw0, rw1 = _taps(low.shape[-2], H)
    c0, c1, cw0, cw1 = _taps(low.shape[-1], W)
    out = np.empty((K, H, W), np.dtype(dtype))
    for k in range(K):
        plane = low[k, 0]
        cols = plane[:, c0] * cw0 + plane[:, c1] * cw1  # (h, W): width first, as the official resize
        for y in range(0, H, ROWS):
            s = slice(y, min(y + ROWS, H))
            block = cols[r0[s]] * rw0[s, None] + cols[r1[s]] * rw1[s, None]  # (rows, W)
            np.greater(block, 0, out=out[k, s]) if out.dtype == np.bool_ else np.copyto(out[k, s], block > 0)
    return out


def boxes_of(masks: np.ndarray) -> np.ndarray:
    """(K, H, W) masks -> (K, 4) int32 x0, y0, x1, y1 (inclusive), -1 rows for empty masks."""
    boxes = np.full((masks.shape[0], 4), -1, np.int32)
    for k, m in enumerate(masks):
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        if rows.size:
            boxes[k] = (cols[0], rows[0], cols[-1], rows[-1])
    return boxes


def make_result(frame_idx: int, obj_ids: list[int], low: np.ndarray, scores: np.ndarray, video_size: tuple[int, int],
                mask_size: tuple[int, int] | None = None, mask_dtype: type = bool) -> TrackResult:
    """A :class:`TrackResult` from low-res logits (K, 1, 4h, 4h) and scores (K,); mask_size is (H, W)."""
    size = video_size if mask_size is None else tuple(int(s) for s in mask_size)
    if len(size) != 2 or min(size) < 1:
        raise Sam2rtError(f"mask_size must be (height, width) with positive sides, got {mask_size!r}")
    if np.dtype(mask_dtype) not in (np.dtype(bool), np.dtype(np.uint8)):
        raise Sam2rtError(f"mask_dtype must be bool or numpy.uint8, got {mask_dtype!r}")
    masks = threshold_resize(low, size, mask_dtype)
    scores = np.asarray(scores, np.float32)
    return TrackResult(frame_idx, list(obj_ids), masks, low, scores, scores > 0, boxes_of(masks))
