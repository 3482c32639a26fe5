"""Image files as frames: opening one safely, reading one as RGB, and the JPEG folder's file names.

The official loader reads ``<index>.jpg`` files of a folder (``JPEG_EXTENSIONS``) with Pillow; these helpers
refuse what it would get wrong without a word (16-bit pixels turned white, other image files skipped,
names ``int()`` cannot read), and decode every file through one checked path (decompression bombs,
undecodable files). Used by ``runtime.frames`` and by ``sam2rt segment``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image

from sam2rt.errors import Sam2rtError

JPEG_EXTENSIONS = (".jpg", ".jpeg", ".JPG", ".JPEG")  # what the official loader accepts
EXTRACT_HINT = (
    "pass a folder of JPEG frames named <index>.jpg, or extract one with "
    "sam2rt.runtime.frames.extract_jpeg_folder(video, out_dir) or "
    "`ffmpeg -i video.mp4 -q:v 2 -start_number 0 out_dir/%05d.jpg`"
)


# Pillow modes wider than 8 bits: convert("RGB") clips them to 255, so 16-bit data would become all white.
_WIDE_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N")


def open_image(path: Path, wide_ok: bool = False) -> Image.Image:
    """Open a frame (header only), refusing what the official loader would silently get wrong
    (``wide_ok``: 16-bit images are let through, for ``read_image`` to scale)."""
    try:
        image = Image.open(path)
    except Image.DecompressionBombError as error:
        raise Sam2rtError(f"{path} is too large to decode safely ({error}); resize the frames, e.g. with "
                          "`ffmpeg -i in.mp4 -vf scale=1920:-2 -q:v 2 -start_number 0 out_dir/%05d.jpg`.") from None
    except OSError as error:
        raise decode_error(path, error) from error
    if image.mode in _WIDE_MODES and not wide_ok:
        image.close()
        raise Sam2rtError(f"{path} holds {image.mode} (16/32-bit) pixels; frames must be 8-bit RGB or grey "
                          "(a 16-bit image would turn all white). Convert them to 8-bit JPEG first.")
    return image


def read_image(path: str | os.PathLike) -> np.ndarray:
    """One image file -> (H, W, 3) uint8 RGB: the frame checks (decompression bomb, undecodable file), with
    16-bit grey scaled to 8 bits instead of refused (``image_transforms.rgb_from_pil``)."""
    from sam2rt.runtime.image_transforms import rgb_from_pil

    path = Path(path)
    if path.is_dir() or not path.exists():
        raise Sam2rtError(f"cannot read {path}: {'it is a folder' if path.is_dir() else 'it does not exist'}; "
                          "pass an image file (JPEG, PNG)")
    with open_image(path, wide_ok=True) as image:
        try:
            return rgb_from_pil(image)
        except OSError as error:
            raise decode_error(path, error) from error
        except Sam2rtError as error:
            raise Sam2rtError(f"{path}: {error}") from None


def decode_error(path: Path, error: Exception) -> Sam2rtError:
    return Sam2rtError(f"Cannot decode {path} ({error}); replace the file or extract the frames again.")


_OTHER_IMAGES = (".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")  # image files the official loader skips
IMAGE_FILE_SUFFIXES = (*{s.lower() for s in JPEG_EXTENSIONS}, *_OTHER_IMAGES)  # a single image as a 1-frame video
_INDEX = re.compile(r"[0-9]+")  # ASCII digits: str.isdigit() also accepts "²", which int() rejects


def sorted_jpegs(folder: Path) -> list[Path]:
    listed = list(folder.iterdir())
    paths = [p for p in listed if p.suffix in JPEG_EXTENSIONS]
    others = sorted(p.name for p in listed if p.suffix.lower() in _OTHER_IMAGES or p.suffix.lower() in (".jpg", ".jpeg")
                    and p.suffix not in JPEG_EXTENSIONS)
    if others:  # the official loader would skip them silently and number the remaining frames differently
        raise Sam2rtError(
            f"{folder} mixes JPEG frames with {len(others)} other image file(s) ({others[:3]}); the official "
            "loader reads only *.jpg/*.jpeg and would skip them. Convert every frame to <index>.jpg, or move "
            "the other files out of the folder." if paths else
            f"No JPEG frames (*.jpg, *.jpeg) in {folder}, only {others[:3]}; convert them to <index>.jpg "
            f"(the official loader reads JPEG only), or {EXTRACT_HINT}.")
    if not paths:
        raise Sam2rtError(f"No JPEG frames (*.jpg, *.jpeg) in {folder}; {EXTRACT_HINT}.")
    bad = [p.name for p in paths if not _INDEX.fullmatch(p.stem)]
    if bad:
        raise Sam2rtError(
            f"JPEG frames must be named <frame index>.jpg with the digits 0-9 (e.g. 00000.jpg); {folder} has "
            f"{bad[:3]}. Rename them or extract the video again."
        )
    by_index: dict[int, Path] = {}
    for p in sorted(paths):
        other = by_index.setdefault(int(p.stem), p)
        if other is not p:  # 0.jpg and 00000.jpg: both would be frame 0 and shift every later frame
            raise Sam2rtError(
                f"{other.name} and {p.name} in {folder} are both frame {int(p.stem)}; keep one naming scheme "
                "(e.g. 00000.jpg, 00001.jpg, ...) and remove the other files."
            )
    return [by_index[i] for i in sorted(by_index)]
