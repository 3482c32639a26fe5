"""The official ``SAM2Transforms`` (single-image path) in numpy: preprocessing, prompt coordinates, mask output.

The image predictor does not resize like the video predictor (Pillow bicubic on uint8): torchvision's
``ToTensor`` makes float32 in [0, 1], ``Resize((S, S))`` on a float tensor is
``F.interpolate(mode="bilinear", align_corners=False, antialias=True)``, then ``Normalize`` subtracts the
ImageNet mean and divides by the std in float32. ``resize_bilinear`` uses PyTorch's own (float32) weights, so
the result differs from torch only by summation order (about 1e-7; measured in tests/runtime).
Imports no torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sam2rt.errors import Sam2rtError
from sam2rt.runtime.imageops import IMAGENET_MEAN, IMAGENET_STD, resize_bilinear

LOW_RES_CLAMP = 32.0  # the official predictor clamps the low-res logits it returns to [-32, 32]


_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


def rgb_from_pil(image: Any) -> np.ndarray:
    """A PIL image -> (H, W, 3) uint8 RGB. 16-bit grey (``I;16*``, and ``I`` as Pillow opens a 16-bit PNG) is
    scaled to 8 bits (v * 255 / 65535, rounded); Pillow's own ``convert("RGB")`` would clip it to 255, all
    white. Float (``F``) and other 32-bit images have no known range and are refused."""
    mode = image.mode
    if mode in _SIXTEEN_BIT or (mode == "I" and image.format == "PNG"):
        grey = np.asarray(image).astype(np.float64)  # (H, W)
        if grey.min(initial=0) < 0 or grey.max(initial=0) > 65535:
            raise Sam2rtError(f"the {mode} image has values outside 0..65535; save it as 8-bit RGB")
        rgb8 = np.rint(grey * (255.0 / 65535.0)).astype(np.uint8)
        return np.repeat(rgb8[..., None], 3, axis=2)
    if mode in ("I", "F"):
        raise Sam2rtError(f"the image holds {mode} (32-bit {'float' if mode == 'F' else 'integer'}) pixels "
                          "with no known range; convert it to 8-bit RGB first")
    return np.asarray(image.convert("RGB"))


def check_image(image: object) -> np.ndarray:
    """A user image -> (H, W, 3) uint8 RGB array (numpy arrays are taken as RGB, PIL images converted)."""
    if not isinstance(image, np.ndarray) and hasattr(image, "convert") and hasattr(image, "size"):
        image = rgb_from_pil(image)  # a PIL image
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = f"{type(image).__name__} {getattr(image, 'shape', '')} {getattr(image, 'dtype', '')}".strip()
        hint = " (16-bit data: scale it to 8 bits, e.g. (image // 257).astype(np.uint8))" \
            if getattr(image, "dtype", None) == np.uint16 else ""
        raise Sam2rtError(f"expected an RGB image as a (H, W, 3) uint8 numpy array or a PIL image, got {got}{hint}; "
                          "e.g. np.asarray(Image.open(path).convert('RGB'))")
    if min(image.shape[:2]) < 1:
        raise Sam2rtError(f"the image is empty (shape {image.shape})")
    return image


def preprocess_image(rgb: np.ndarray, image_size: int) -> np.ndarray:
    """``SAM2Transforms`` on one image: ToTensor, Resize((S, S)) (bilinear, antialiased), Normalize.

    Args:
        rgb: (H, W, 3) uint8 RGB.
        image_size: S.
    Returns:
        (1, 3, S, S) float32, the image encoder's input.
    """
    chw = np.ascontiguousarray(rgb.transpose(2, 0, 1)).astype(np.float32) / np.float32(255.0)  # (3, H, W)
    resized = resize_bilinear(chw, (image_size, image_size), antialias=True)  # (3, S, S)
    mean = np.asarray(IMAGENET_MEAN, np.float32)[:, None, None]
    std = np.asarray(IMAGENET_STD, np.float32)[:, None, None]
    return ((resized - mean) / std)[None].astype(np.float32, copy=False)


def transform_coords(coords: np.ndarray, image_size: int, normalize: bool, orig_hw: tuple[int, int]) -> np.ndarray:
    """``SAM2Transforms.transform_coords``: (..., 2) x, y -> model-input pixels, float32.

    normalize=True: ``coords`` are pixels of the original image (divided by its width/height first);
    normalize=False: they are already in [0, 1].
    """
    out = np.array(coords, dtype=np.float32)  # a copy
    if normalize:
        h, w = orig_hw
        out[..., 0] = out[..., 0] / np.float32(w)
        out[..., 1] = out[..., 1] / np.float32(h)
    return out * np.float32(image_size)


def postprocess_masks(low_res: np.ndarray, orig_hw: tuple[int, int]) -> np.ndarray:
    """``SAM2Transforms.postprocess_masks`` without hole/sprinkle removal (the predictor's defaults):
    (B, C, 4h, 4h) logits -> (B, C, H, W), bilinear, align_corners=False, no antialias."""
    return resize_bilinear(low_res, orig_hw, antialias=False).astype(np.float32, copy=False)
