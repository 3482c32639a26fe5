"""The numpy/OpenCV pieces of "segment everything" (official ``sam2.utils.amg``, without torch).

Point grids and crop boxes (same arithmetic as the official ones), the stability score, mask -> box, box
non-maximum suppression (OpenCV's ``NMSBoxes``), the low-res hole/sprinkle clean-up that
``min_mask_region_area`` asks for (OpenCV connected components), and the mask encodings of the output records
(uncompressed RLE in numpy, COCO RLE with pycocotools). Boxes are x0, y0, x1, y1 with inclusive pixel
indices, as ``batched_mask_to_box`` returns them.
"""

from __future__ import annotations

import math
from functools import lru_cache
from itertools import product
from typing import Any

import cv2
import numpy as np

from sam2rt.errors import Sam2rtError


# ---- prompts and crops ----------------------------------------------------------------------------------
def point_grid(n_per_side: int) -> np.ndarray:
    """(n*n, 2) float64 x, y in [0, 1]: pixel centres of an n x n grid, x varying fastest."""
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs, ys = np.meshgrid(side, side)  # (n, n) each, x along columns
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> list[np.ndarray]:
    """One grid per crop layer; layer i has ``int(n / scale**i)`` points per side."""
    return [point_grid(int(n_per_side / (scale_per_layer ** i))) for i in range(n_layers + 1)]


def crop_boxes(im_hw: tuple[int, int], n_layers: int, overlap_ratio: float) -> tuple[list[list[int]], list[int]]:
    """Crop boxes [x0, y0, x1, y1] (exclusive ends) and their layer: the image, then (2**i)**2 per layer i.

    Layer i's crops overlap by ``int(overlap_ratio * short_side * 2 / n)`` pixels (n crops per side).
    """
    im_h, im_w = im_hw
    boxes, layers = [[0, 0, im_w, im_h]], [0]
    for i in range(n_layers):
        n = 2 ** (i + 1)
        overlap = int(overlap_ratio * min(im_h, im_w) * (2 / n))
        crop_w = int(math.ceil((overlap * (n - 1) + im_w) / n))
        crop_h = int(math.ceil((overlap * (n - 1) + im_h) / n))
        x0s = [int((crop_w - overlap) * k) for k in range(n)]
        y0s = [int((crop_h - overlap) * k) for k in range(n)]
        for x0, y0 in product(x0s, y0s):  # x-major, as the official order
            boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layers.append(i + 1)
    return boxes, layers


# ---- mask logits ------------------------------------------------------------------------------------------
@lru_cache(maxsize=32)
def _taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ATen's bilinear (align_corners=False) taps along one axis: indices i0, i1 and float32 weights w0, w1.

    Source position ``max(scale * (i + 0.5) - 0.5, 0)`` in float32 (a fused multiply-add, as
    ``imageops.resize_matrix``), clamped to the last pixel.
    """
    f32 = np.float32
    scale = f32(in_size) / f32(out_size)
    half_i = np.arange(out_size, dtype=f32) + f32(0.5)
    src = np.maximum((scale.astype(np.float64) * half_i - 0.5).astype(f32), f32(0.0))  # (out,)
    i0 = np.minimum(src.astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    w1 = np.clip(src - i0.astype(f32), f32(0.0), f32(1.0))
    return i0, i1, f32(1.0) - w1, w1


def resize_logits(low: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """(K, h, w) float32 -> (K, H, W) float32, ``F.interpolate(bilinear, align_corners=False)`` computed as
    ATen does (width taps first, then height), by gathers: O(H*W) per mask, not a matrix product."""
    r0, r1, rw0, rw1 = _taps(low.shape[-2], out_hw[0])
    c0, c1, cw0, cw1 = _taps(low.shape[-1], out_hw[1])
    cols = low[:, :, c0] * cw0 + low[:, :, c1] * cw1  # (K, h, W)
    out = np.take(cols, r0, axis=1)  # (K, H, W), then in place: no more full-size temporaries than needed
    out *= rw0[:, None]
    bottom = np.take(cols, r1, axis=1)
    bottom *= rw1[:, None]
    out += bottom
    return out


def _exact_at(plane: np.ndarray, out_hw: tuple[int, int], ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """``resize_logits`` of one (h, w) plane evaluated only at the pixels (ys, xs): (N,) float32."""
    r0, r1, rw0, rw1 = (a[ys] for a in _taps(plane.shape[0], out_hw[0]))
    c0, c1, cw0, cw1 = (a[xs] for a in _taps(plane.shape[1], out_hw[1]))
    top = plane[r0, c0] * cw0 + plane[r0, c1] * cw1  # width first, as resize_logits
    bottom = plane[r1, c0] * cw0 + plane[r1, c1] * cw1
    return top * rw0 + bottom * rw1


def upscale_masks(low: np.ndarray, out_hw: tuple[int, int], mask_threshold: float,
                  offset: float) -> tuple[np.ndarray, np.ndarray]:
    """Masks and stability scores of low-res logits resized to ``out_hw``, as the official generator gets
    them from full-size float logits (``F.interpolate`` bilinear, then thresholds), but fast.

    OpenCV's bilinear resize is several times faster than the exact one and differs from it by at most
    4.7e-5 x (1 + max |logit|) (measured on random planes); pixels within 1e-3 x (1 + max |logit|) of a
    threshold are recomputed exactly, so every pixel lands on the side of each threshold that the exact
    resize puts it.

    Args:
        low: (K, h, w) float32 logits.
        out_hw: (H, W).
    Returns:
        masks (K, H, W) bool (logits > mask_threshold) and stability (K,) float32 (see ``stability_scores``).
    """
    H, W = out_hw
    thresholds = np.float32([mask_threshold, mask_threshold + offset, mask_threshold - offset])
    masks = np.empty((len(low), H, W), bool)
    inter, union = np.zeros(len(low), np.int64), np.zeros(len(low), np.int64)
    for k, plane in enumerate(np.asarray(low, np.float32)):
        up = cv2.resize(plane, (W, H), interpolation=cv2.INTER_LINEAR)  # (H, W) float32
        tol = np.float32(1e-3 * (1.0 + float(np.abs(plane).max())))
        near = np.zeros((H, W), bool)
        for t in thresholds:
            near |= np.abs(up - t) < tol
        ys, xs = np.divmod(np.flatnonzero(near), W)
        up[ys, xs] = _exact_at(plane, out_hw, ys, xs)
        np.greater(up, thresholds[0], out=masks[k])
        inter[k] = np.count_nonzero(up > thresholds[1])
        union[k] = np.count_nonzero(up > thresholds[2])
    with np.errstate(invalid="ignore", divide="ignore"):
        return masks, (inter / union).astype(np.float32)


# ---- mask statistics --------------------------------------------------------------------------------
def stability_scores(logits: np.ndarray, mask_threshold: float, offset: float) -> np.ndarray:
    """IoU of the masks thresholded at ``t + offset`` and ``t - offset`` (the first lies inside the second).

    logits (K, H, W) float32 -> (K,) float32; NaN where both are empty (the official 0/0).
    """
    flat = logits.reshape(len(logits), -1)
    inter = np.count_nonzero(flat > np.float32(mask_threshold + offset), axis=1)
    union = np.count_nonzero(flat > np.float32(mask_threshold - offset), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (inter / union).astype(np.float32)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(H, W) bool -> x0, y0, x1, y1 inclusive; (0, 0, 0, 0) for an empty mask (as ``batched_mask_to_box``)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return 0, 0, 0, 0
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def near_crop_edge(box: np.ndarray, crop_box: list[int], orig_box: list[int], atol: float = 20.0) -> np.ndarray:
    """(N, 4) boxes in crop coordinates -> (N,) bool: a side within ``atol`` of a crop edge that is not an edge
    of the image (such masks are probably cut by the crop)."""
    shifted = box.astype(np.float32) + np.float32([crop_box[0], crop_box[1], crop_box[0], crop_box[1]])
    at_crop = np.abs(shifted - np.float32(crop_box)) <= atol
    at_image = np.abs(shifted - np.float32(orig_box)) <= atol
    return (at_crop & ~at_image).any(axis=1)


def remove_small_regions(low_res: np.ndarray, max_area: int) -> np.ndarray:
    """What ``SAM2Transforms.postprocess_masks`` does with ``max_hole_area = max_sprinkle_area = max_area``.

    On each (h, w) plane of logits (threshold 0): 8-connected background components of area <= max_area
    become 10.0 (holes filled) and 8-connected foreground components of area <= max_area become -10.0
    (sprinkles removed), both found on the input plane. (K, h, w) float32 -> new array.
    """
    out = np.array(low_res, dtype=np.float32)
    for plane in out:
        fg = plane > 0
        for region, value in ((~fg, 10.0), (fg, -10.0)):
            _, labels, stats, _ = cv2.connectedComponentsWithStats(region.astype(np.uint8), connectivity=8)
            small = stats[:, cv2.CC_STAT_AREA] <= max_area
            small[0] = False  # label 0: the other side of the threshold
            plane[small[labels]] = np.float32(value)
    return out


# ---- de-duplication ---------------------------------------------------------------------------------
def nms(boxes: np.ndarray, scores: np.ndarray, iou_thresh: float) -> np.ndarray:
    """Greedy box NMS (``torchvision.ops.batched_nms`` with one category) with OpenCV's ``NMSBoxes``.

    boxes (N, 4) x0, y0, x1, y1 (areas (x1-x0)*(y1-y0), as torchvision); scores (N,). A box is dropped when its
    IoU with a kept, better-scored box exceeds ``iou_thresh``. Returns kept indices (int64), best first.
    OpenCV wants scores above a non-negative threshold, so it gets ranks (equal scores keep their order, as
    torchvision's stable sort). Zero-area boxes (one-pixel-wide masks, empty masks) never suppress or get
    suppressed in torchvision (IoU 0, or 0/0 = NaN between two of them) but are "identical" to OpenCV, so they
    bypass it. OpenCV computes the IoU in double, torchvision in float32: a pair whose IoU is within float32
    rounding of the threshold (e.g. exactly 3/10 at 0.3) can be decided differently; at 0.5 and 0.7 (the
    defaults) an exact ratio rounds the same way on both sides.
    """
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    position = np.empty(len(order), np.int64)
    position[order] = np.arange(len(order))  # 0 = best
    b = np.asarray(boxes, np.float64)
    xywh = np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)
    flat = np.flatnonzero(xywh[:, 2] * xywh[:, 3] <= 0)
    solid = np.flatnonzero(xywh[:, 2] * xywh[:, 3] > 0)
    ranks = (len(order) - position[solid]).astype(np.float32)  # best = N, worst >= 1
    kept = np.asarray(cv2.dnn.NMSBoxes(xywh[solid].tolist(), ranks.tolist(), 0.0, float(iou_thresh)) if len(solid)
                      else [], np.int64).reshape(-1)
    keep = np.concatenate([solid[kept], flat])
    return keep[np.argsort(position[keep], kind="stable")].astype(np.int64)


# ---- encodings ----------------------------------------------------------------------------------------
def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """(H, W) bool -> uncompressed RLE ``{"size": [H, W], "counts": [...]}`` (column-major runs, first run
    background, as pycocotools)."""
    h, w = mask.shape
    flat = np.asarray(mask, bool).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [h * w]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [h, w], "counts": counts}


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Uncompressed RLE -> (H, W) bool."""
    h, w = rle["size"]
    values = np.arange(len(rle["counts"])) % 2 == 1
    return np.repeat(values, rle["counts"]).reshape(w, h).T


def coco_rle(mask: np.ndarray) -> dict[str, Any]:
    """(H, W) bool -> COCO compressed RLE with ``counts`` as str (JSON-ready), by pycocotools."""
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        raise Sam2rtError('output_mode="coco_rle" needs pycocotools: pip install "sam2rt[everything]" '
                          "(or pip install pycocotools)") from None
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("utf-8")
    return rle


def decode_segmentation(segmentation: Any) -> np.ndarray:
    """A record's ``segmentation`` in any output mode -> (H, W) bool."""
    if isinstance(segmentation, np.ndarray):
        return segmentation.astype(bool, copy=False)
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        return rle_to_mask(segmentation)
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), (str, bytes)):
        from pycocotools import mask as mask_utils

        counts = segmentation["counts"]
        rle = {"size": segmentation["size"], "counts": counts.encode() if isinstance(counts, str) else counts}
        return mask_utils.decode(rle).astype(bool)
    raise Sam2rtError("a mask record's segmentation must be an (H, W) array, an uncompressed RLE or a COCO RLE")
