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
from typing import Callable

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


@lru_cache(maxsize=16)
def _torch_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The two taps per output index of ``imageops.resize_matrix`` (PyTorch's float32 source coordinates)."""
    from sam2rt.runtime.imageops import resize_matrix

    m = resize_matrix(in_size, out_size, False)  # (out, in), at most two nonzeros per row
    rows = np.arange(out_size)
    i0 = (m != 0).argmax(1)
    has_next = i0 + 1 < in_size
    i1 = np.where(has_next, i0 + 1, i0)
    w1 = np.where(has_next, m[rows, i1], 0).astype(np.float32)
    return i0, i1, m[rows, i0].astype(np.float32), w1


def resize_logits(low: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(K, 1, h, w) float32 logits -> (K, 1, H, W) float32 at the video size, bilinear without antialias
    (``F.interpolate(align_corners=False)``, the official output resize), as two-tap gathers (width first, the
    taps of ``threshold_resize``) instead of the dense matrix products of ``imageops.resize_bilinear``, which
    multiply mostly zeros. OpenCV's INTER_LINEAR (and ``_taps``) compute the source coordinates in other
    precisions, ~4e-4 apart on logits of 5; these taps are PyTorch's: equal to ``resize_bilinear`` to 2e-6."""
    K, (H, W) = low.shape[0], (int(size[0]), int(size[1]))
    r0, r1, rw0, rw1 = _torch_taps(low.shape[-2], H)
    c0, c1, cw0, cw1 = _torch_taps(low.shape[-1], W)
    out = np.empty((K, 1, H, W), np.float32)
    tmp = np.empty((H, W), np.float32)
    for k in range(K):
        plane = low[k, 0]
        cols = plane[:, c0] * cw0 + plane[:, c1] * cw1  # (h, W)
        dst = out[k, 0]
        np.take(cols, r0, axis=0, out=dst)
        dst *= rw0[:, None]
        np.take(cols, r1, axis=0, out=tmp)
        tmp *= rw1[:, None]
        dst += tmp
    return out


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


def logits_at(low: np.ndarray, size: tuple[int, int], ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """(K, 1, h, w) logits -> (K, N) float32 bilinear logits at the N pixels (ys, xs) of the ``size`` (H, W) frame.

    The same taps and the same float32 operation order as :func:`threshold_resize`, so a value here is > 0
    exactly where that function's mask is True; only (K, N) floats are made.
    """
    (H, W), plane = size, low[:, 0]
    r0, r1, rw0, rw1 = (a[ys] for a in _taps(low.shape[-2], H))
    c0, c1, cw0, cw1 = (a[xs] for a in _taps(low.shape[-1], W))
    top = plane[:, r0, c0] * cw0 + plane[:, r0, c1] * cw1  # width first, as threshold_resize
    bottom = plane[:, r1, c0] * cw0 + plane[:, r1, c1] * cw1
    return top * rw0 + bottom * rw1


def fill_holes_near(mask_logits: np.ndarray, max_area: int) -> np.ndarray:
    """``imageops.fill_holes`` computed only inside each mask's foreground bounding box (same result).

    Why it is the same: take a background component of area <= max_area < the plane's width and height. Along
    the row of any of its pixels the component cannot span the whole row, so that row holds foreground; the
    same for its columns: the component lies inside the foreground's bounding box. Labelling the box grown
    by one pixel, components that reach that outer ring extend outside the box, so they are not small; all
    others are whole and keep their true area. An empty mask has no holes. (K, 1, h, w) float32 -> new array.
    """
    out = np.array(mask_logits, dtype=np.float32)
    if max_area <= 0:
        return out
    for plane in out.reshape((-1,) + out.shape[-2:]):
        fg = plane > 0
        rows, cols = np.flatnonzero(fg.any(axis=1)), np.flatnonzero(fg.any(axis=0))
        if rows.size == 0 or max_area >= min(plane.shape):
            if rows.size and max_area >= min(plane.shape):  # the argument needs small holes: label it all
                _fill(plane, ~fg, max_area, ring=None)
            continue
        y0, y1 = max(rows[0] - 1, 0), min(rows[-1] + 2, plane.shape[0])
        x0, x1 = max(cols[0] - 1, 0), min(cols[-1] + 2, plane.shape[1])
        ring = np.zeros((y1 - y0, x1 - x0), bool)  # the grown rows/columns (not where the box meets the edge)
        if rows[0] > 0:
            ring[0] = True
        if rows[-1] + 1 < plane.shape[0]:
            ring[-1] = True
        if cols[0] > 0:
            ring[:, 0] = True
        if cols[-1] + 1 < plane.shape[1]:
            ring[:, -1] = True
        _fill(plane[y0:y1, x0:x1], ~fg[y0:y1, x0:x1], max_area, ring)
    return out


def _fill(plane: np.ndarray, background: np.ndarray, max_area: int, ring: np.ndarray | None) -> None:
    import cv2

    _, labels, stats, _ = cv2.connectedComponentsWithStats(background.astype(np.uint8), connectivity=8)
    small = stats[:, cv2.CC_STAT_AREA] <= max_area
    small[0] = False  # label 0 is the foreground
    if ring is not None:
        small[np.unique(labels[ring])] = False  # reaches outside the box: not a small component
    plane[small[labels]] = np.float32(0.1)


def boxes_of(masks: np.ndarray) -> np.ndarray:
    """(K, H, W) masks -> (K, 4) int32 x0, y0, x1, y1 (inclusive), -1 rows for empty masks."""
    boxes = np.full((masks.shape[0], 4), -1, np.int32)
    for k, m in enumerate(masks):
        rows = np.flatnonzero(m.any(axis=1))
        if rows.size:
            cols = np.flatnonzero(m[rows[0]:rows[-1] + 1].any(axis=0))
            boxes[k] = (cols[0], rows[0], cols[-1], rows[-1])
    return boxes


def check_options(options: dict) -> None:
    """Validate ``track(output="result", ...)`` options before any work (a bad call changes nothing)."""
    unknown = set(options) - {"mask_size", "mask_dtype"}
    if unknown:
        raise Sam2rtError(f"unknown track option(s) {sorted(unknown)}; the options are mask_size and mask_dtype")
    size = options.get("mask_size")
    if size is not None and (np.ndim(size) != 1 or len(size) != 2 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in size)):
        raise Sam2rtError(f"mask_size must be (height, width) with positive integer sides, got {size!r}")
    if "mask_dtype" in options and not _is_mask_dtype(options["mask_dtype"]):
        raise Sam2rtError(f"mask_dtype must be bool or numpy.uint8, got {options['mask_dtype']!r}")


def _is_mask_dtype(value: object) -> bool:
    """bool or uint8 (anything numpy cannot read as a dtype, e.g. "garbage", is neither)."""
    try:
        return np.dtype(value) in (np.dtype(bool), np.dtype(np.uint8))
    except (TypeError, ValueError):
        return False


def make_result(frame_idx: int, obj_ids: list[int], low: np.ndarray, scores: np.ndarray, video_size: tuple[int, int],
                mask_size: tuple[int, int] | None = None, mask_dtype: type = bool,
                threshold: Callable[..., np.ndarray] | None = None) -> TrackResult:
    """A :class:`TrackResult` from low-res logits (K, 1, 4h, 4h) and scores (K,); mask_size is (H, W).

    threshold: the executor's ``masks(low, size, dtype)`` where it makes the masks itself (where the data is),
    else :func:`threshold_resize` on the host.
    """
    size = video_size if mask_size is None else tuple(int(s) for s in mask_size)
    if len(size) != 2 or min(size) < 1:
        raise Sam2rtError(f"mask_size must be (height, width) with positive sides, got {mask_size!r}")
    if not _is_mask_dtype(mask_dtype):
        raise Sam2rtError(f"mask_dtype must be bool or numpy.uint8, got {mask_dtype!r}")
    masks = (threshold or threshold_resize)(low, size, mask_dtype)
    scores = np.asarray(scores, np.float32)
    return TrackResult(frame_idx, list(obj_ids), masks, low, scores, scores > 0, boxes_of(masks))
