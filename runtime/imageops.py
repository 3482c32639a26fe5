"""Image operations of the official SAM 2 video predictor, in numpy (no torch).

Each function names the official code it reproduces and how closely:
- `preprocess_official`: Pillow resize + ImageNet normalisation of `load_video_frames_from_jpg_images`,
  bit-exact.
- `resize_bilinear`: `F.interpolate(mode="bilinear", align_corners=False[, antialias=True])`, to float32
  rounding (about 1e-7 relative): the same weights, another summation order.
- `mask_prompt_to_input`: the mask resize of `SAM2VideoPredictor.add_new_mask`.
- `fill_holes`: `fill_holes_in_mask_scores` (8-connected background components).
- `bf16_round_`: `tensor.to(torch.bfloat16).float()`, bit-exact.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable, Sequence
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image

from sam2rt.errors import Sam2rtError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_rgb(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        got = f"{type(rgb).__name__} {getattr(rgb, 'shape', '')} {getattr(rgb, 'dtype', '')}"
        raise Sam2rtError(
            f"Expected an RGB frame as a (H, W, 3) uint8 numpy array, got {got}. "
            "Convert it first, e.g. np.asarray(Image.open(path).convert('RGB'))."
        )


def _check_size(image_size: int) -> int:
    if int(image_size) != image_size or image_size <= 0:
        raise Sam2rtError(f"image_size must be a positive integer (e.g. 1024), got {image_size!r}.")
    return int(image_size)


@lru_cache(maxsize=None)
def _normalise_lut() -> np.ndarray:
    """(3, 256) float32: normalised value of each uint8 level per channel.

    The same float64 `/255.0`, float32 cast, float32 subtract and divide as the official loader, done
    once per level, so the lookup is bit-identical to computing it per pixel.
    """
    levels = (np.arange(256, dtype=np.uint8) / 255.0).astype(np.float32)  # (256,)
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)[:, None]  # (3, 1)
    std = np.asarray(IMAGENET_STD, dtype=np.float32)[:, None]
    lut = (levels[None, :] - mean) / std  # (3, 256) float32
    lut.flags.writeable = False
    return lut


def _normalise_chw(resized: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8 -> (1, 3, S, S) float32, ImageNet-normalised."""
    lut = _normalise_lut()
    out = np.empty((1, 3) + resized.shape[:2], dtype=np.float32)
    for c in range(3):
        np.take(lut[c], resized[:, :, c], out=out[0, c])
    return out


def preprocess_official(rgb: np.ndarray, image_size: int, bgr: bool = False) -> np.ndarray:
    """Resize and normalise a frame exactly as the official video predictor does.

    `Image.fromarray(rgb).resize((S, S))` (Pillow's default filter: bicubic, antialiased when shrinking),
    `/255.0` in float64, cast to float32, minus the ImageNet mean and divided by its std in float32.

    Args:
        rgb: (H, W, 3) uint8 RGB frame (BGR with ``bgr``: the resize is per channel, so the channels are
            swapped on the small resized image, not on the frame).
        image_size: S, the model's input size.
    Returns:
        (1, 3, S, S) float32, bit-identical to the official `load_video_frames_from_jpg_images`.
    """
    _check_rgb(rgb)
    size = _check_size(image_size)
    resized = np.asarray(Image.fromarray(rgb).resize((size, size)))  # (S, S, 3) uint8
    return _normalise_chw(resized[:, :, ::-1] if bgr else resized)


def preprocess_fast(rgb: np.ndarray, image_size: int, bgr: bool = False) -> np.ndarray:
    """Resize with OpenCV and normalise; faster than `preprocess_official` but NOT bit-identical.

    INTER_AREA when any side shrinks (it averages, so it does not alias), INTER_LINEAR when both grow.
    Pixels differ from Pillow's bicubic by a few uint8 levels; the normalisation is the same lookup.

    Args:
        rgb: (H, W, 3) uint8 RGB frame (BGR with ``bgr``, swapped after the resize).
        image_size: S.
    Returns:
        (1, 3, S, S) float32.
    """
    _check_rgb(rgb)
    size = _check_size(image_size)
    shrinks = size < max(rgb.shape[0], rgb.shape[1])
    interp = cv2.INTER_AREA if shrinks else cv2.INTER_LINEAR
    resized = cv2.resize(rgb, (size, size), interpolation=interp)  # (S, S, 3) uint8
    return _normalise_chw(resized[:, :, ::-1] if bgr else resized)


PREPROCESSORS = ("official", "fast")


def preprocessor(name: object) -> Callable[[np.ndarray, int], np.ndarray]:
    """The frame preprocessing called ``name``: "official" (bit-exact Pillow resize) or "fast" (OpenCV)."""
    if name == "official":
        return preprocess_official
    if name == "fast":
        return preprocess_fast
    raise Sam2rtError(f"preprocess must be one of {', '.join(map(repr, PREPROCESSORS))}, got {name!r}; "
                      "\"official\" matches the official predictor bit for bit, \"fast\" resizes with OpenCV")


@lru_cache(maxsize=64)
def resize_matrix(in_size: int, out_size: int, antialias: bool) -> np.ndarray:
    """One axis of PyTorch's `F.interpolate(mode="bilinear", align_corners=False)` as a matrix.

    Output pixel i sits at `scale * (i + 0.5)` in input coordinates, `scale = in / out`.
    - antialias=False (ATen `compute_indices_weights_linear`): source `scale * (i + 0.5) - 0.5`, clamped
      at 0; linear weights between its floor and the next pixel, clamped at the last pixel.
    - antialias=True (ATen `_compute_weights_aa`): the triangle filter `1 - |j + 0.5 - center| / s`, with
      s = scale when shrinking (the filter widens with the factor) and 1 otherwise, normalised per row.
    The arithmetic is float32 in ATen's order and window (the non-antialiased source index is a fused
    multiply-add there), so the weights are bit-identical to PyTorch's; plain float64 weights moved
    results by ~5e-5 at 7.5x upscaling.

    Returns:
        (out_size, in_size) float32, read-only; rows sum to 1.
    """
    if in_size <= 0 or out_size <= 0:
        raise Sam2rtError(f"Resize sizes must be positive, got {in_size} -> {out_size}.")
    f32 = np.float32
    scale = f32(in_size) / f32(out_size)
    half_i = np.arange(out_size, dtype=f32) + f32(0.5)  # (out,)
    if antialias:
        support = scale if scale >= 1.0 else f32(1.0)  # also the filter's stretch
        center = scale * half_i  # (out,)
        j = np.arange(in_size)[None, :]  # (1, in)
        # ATen's tap window, truncated like its int casts; float rounding can drop a tiny edge tap
        lo = np.maximum((center - support + f32(0.5)).astype(np.int64), 0)[:, None]  # (out, 1)
        hi = np.minimum((center + support + f32(0.5)).astype(np.int64), in_size)[:, None]
        dist = (j.astype(f32) - center[:, None] + f32(0.5)) * (f32(1.0) / support)  # (out, in)
        weights = np.maximum(f32(0.0), f32(1.0) - np.abs(dist))
        weights = np.where((j >= lo) & (j < hi), weights, f32(0.0))
        total = np.cumsum(weights, axis=1, dtype=f32)[:, -1:]  # sequential sum, as ATen
        matrix = weights / total
    else:
        # float64 product then one rounding = float32 fused multiply-add
        src = np.maximum((scale.astype(np.float64) * half_i - 0.5).astype(f32), f32(0.0))  # (out,)
        lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
        lam = np.clip(src - lo.astype(f32), f32(0.0), f32(1.0))
        rows = np.arange(out_size)
        matrix = np.zeros((out_size, in_size), dtype=f32)
        np.add.at(matrix, (rows, lo), f32(1.0) - lam)
        np.add.at(matrix, (rows, np.minimum(lo + 1, in_size - 1)), lam)
    matrix = matrix.astype(f32, copy=False)
    matrix.flags.writeable = False
    return matrix


def resize_bilinear(x: np.ndarray, out_hw: tuple[int, int], antialias: bool = False) -> np.ndarray:
    """Bilinear resize of the last two axes, as `F.interpolate(mode="bilinear", align_corners=False)`.

    Computed as `R_h @ x @ R_w.T` (width first, like PyTorch's separable antialias kernel).

    Args:
        x: (..., H, W) float32.
        out_hw: (H', W').
        antialias: PyTorch's `antialias=True` (matters only when shrinking).
    Returns:
        (..., H', W') float32, a new array.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 2:
        raise Sam2rtError(f"resize_bilinear needs an array of shape (..., H, W), got shape {x.shape}.")
    out_h, out_w = int(out_hw[0]), int(out_hw[1])
    in_h, in_w = x.shape[-2:]
    y = x if in_w == out_w else np.matmul(x, resize_matrix(in_w, out_w, antialias).T)  # (..., H, W')
    y = y if in_h == out_h else np.matmul(resize_matrix(in_h, out_h, antialias), y)  # (..., H', W')
    return x.copy() if y is x else y


def mask_prompt_to_input(mask: np.ndarray, image_size: int) -> np.ndarray:
    """A user mask prompt as the model's mask input, as in the official `add_new_mask`.

    The mask becomes bool (nonzero = object), then float; if it is not S x S it is resized with
    antialiased bilinear interpolation and thresholded at 0.5.

    Args:
        mask: (H, W) bool or 0/1 array.
        image_size: S.
    Returns:
        (1, 1, S, S) float32 of 0.0 / 1.0.
    """
    size = _check_size(image_size)
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.size == 0:
        raise Sam2rtError(
            f"A mask prompt must be a 2-D (H, W) boolean array, got shape {mask.shape}; "
            "pass one mask per object, e.g. mask[0] for a (1, H, W) array."
        )
    as_float = (mask != 0).astype(np.float32)  # (H, W)
    if as_float.shape != (size, size):
        resized = resize_bilinear(as_float, (size, size), antialias=True)
        as_float = (resized >= 0.5).astype(np.float32)
    return as_float[None, None]


def fill_holes(mask_logits: np.ndarray, max_area: int) -> np.ndarray:
    """Fill small background regions of mask logits, as the official `fill_holes_in_mask_scores`.

    Background is `logits <= 0`; each 8-connected background component with area <= max_area (touching
    the border or not, like the official kernel) is set to 0.1, which makes it foreground.

    Args:
        mask_logits: (B, 1, h, w) float32 (any (..., h, w) works).
        max_area: largest component area, in pixels, that is filled; <= 0 disables filling.
    Returns:
        A new (B, 1, h, w) float32 array, or `mask_logits` itself when max_area <= 0.
    """
    if max_area <= 0:
        return mask_logits
    logits = np.asarray(mask_logits, dtype=np.float32)
    if logits.ndim < 2:
        raise Sam2rtError(f"fill_holes needs mask logits of shape (B, 1, h, w), got {logits.shape}.")
    out = logits.copy()
    planes = out.reshape((-1,) + out.shape[-2:])  # (B*1, h, w), a view of `out`
    for plane in planes:
        background = (plane <= 0).astype(np.uint8)  # (h, w)
        _, labels, stats, _ = cv2.connectedComponentsWithStats(background, connectivity=8)
        is_small = stats[:, cv2.CC_STAT_AREA] <= max_area  # (num_labels,)
        is_small[0] = False  # label 0 is the foreground
        plane[is_small[labels]] = np.float32(0.1)
    return out


def bf16_round_(x: np.ndarray) -> np.ndarray:
    """Round float32 values in place to bfloat16 precision (round to nearest, ties to even).

    Equals `t.to(torch.bfloat16).float()`: add `0x7FFF + lsb` to the bit pattern, clear the low 16 bits.
    Infinities stay infinite, finite values past the bf16 range become infinite, NaN becomes the quiet
    NaN 0x7FC00000 (as PyTorch's conversion does).

    Args:
        x: float32 array of any shape; modified in place.
    Returns:
        x.
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.float32:
        raise Sam2rtError(f"bf16_round_ needs a float32 numpy array, got {getattr(x, 'dtype', type(x))}.")
    is_nan = np.isnan(x)
    bits = x.view(np.uint32)
    bias = np.right_shift(bits, 16)
    bias &= np.uint32(1)
    bias += np.uint32(0x7FFF)
    bits += bias  # no overflow for non-NaN: the largest pattern, -inf 0xFF800000, + 0x8000 fits
    bits &= np.uint32(0xFFFF0000)
    bits[is_nan] = np.uint32(0x7FC00000)
    return x


def object_color(obj_id: int) -> tuple[int, int, int]:
    """A bright RGB color for an object id; the same id always gets the same color."""
    hue = (int(obj_id) * 0.618033988749895 + 0.1) % 1.0  # golden-ratio steps keep neighbours apart
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 1.0)
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def overlay(
    rgb: np.ndarray, masks: np.ndarray, obj_ids: Sequence[int], alpha: float = 0.5
) -> np.ndarray:
    """Draw translucent colored masks with a contour per object.

    Args:
        rgb: (H, W, 3) uint8 frame.
        masks: (K, H, W) bool, one mask per object.
        obj_ids: K object ids, which pick the colors.
        alpha: opacity of the mask fill.
    Returns:
        (H, W, 3) uint8, a new image.
    """
    _check_rgb(rgb)
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[1:] != rgb.shape[:2] or len(obj_ids) != masks.shape[0]:
        raise Sam2rtError(
            f"overlay needs masks (K, H, W) matching the frame {rgb.shape[:2]} and K object ids; got "
            f"masks {masks.shape} and {len(obj_ids)} ids. Resize masks to the frame size first."
        )
    out = rgb.astype(np.float32)
    for mask, obj_id in zip(masks.astype(bool), obj_ids):
        color = np.asarray(object_color(obj_id), dtype=np.float32)
        out[mask] = (1.0 - alpha) * out[mask] + alpha * color
    out_u8 = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    for mask, obj_id in zip(masks.astype(np.uint8), obj_ids):
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out_u8, contours, -1, object_color(obj_id), thickness=2)
    return out_u8
