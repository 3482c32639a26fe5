"""``sensor_msgs/Image`` <-> numpy without cv_bridge (which needs a ROS build and OpenCV's C++ side).

Only 8-bit encodings come in: rgb8, bgr8, mono8 (a grey frame is repeated into three channels). Rows may be
padded (``step`` > width * channels), as many camera drivers do; the padding is dropped.
"""

from __future__ import annotations

import array
import sys
from typing import Any

import numpy as np

from sam2rt.errors import Sam2rtError

CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1}


def image_to_rgb(msg: Any, encoding: str = "") -> np.ndarray:
    """A ``sensor_msgs/Image`` -> (H, W, 3) uint8 RGB (a private copy).

    encoding: overrides ``msg.encoding`` (for drivers that label frames wrongly); "" takes the message's.
    Raises Sam2rtError naming the encoding when it is not rgb8/bgr8/mono8, or when the sizes disagree.
    """
    enc = encoding or msg.encoding
    if enc not in CHANNELS:
        raise Sam2rtError(f"image encoding {enc!r} is not supported; publish rgb8, bgr8 or mono8 (convert "
                          "with image_proc or the camera driver's settings)")
    height, width, step, channels = int(msg.height), int(msg.width), int(msg.step), CHANNELS[enc]
    row = width * channels
    data = np.frombuffer(msg.data, np.uint8)
    if height == 0 or width == 0:
        raise Sam2rtError(f"empty {width}x{height} image; check the camera driver")
    if step < row or data.size < step * (height - 1) + row:
        raise Sam2rtError(f"{enc} image {width}x{height} with step {step} needs at least {row} bytes per row "
                          f"and {step * (height - 1) + row} bytes, got step {step} and {data.size} bytes")
    padded = np.pad(data, (0, max(0, step * height - data.size)))  # the last row's padding may be omitted
    pixels = padded[:step * height].reshape(height, step)[:, :row].reshape(height, width, channels)
    if enc == "mono8":
        return np.repeat(pixels, 3, axis=2)
    if enc == "bgr8":
        return np.ascontiguousarray(pixels[:, :, ::-1])
    return pixels.copy()


def mono_image(header: Any, pixels: np.ndarray) -> Any:
    """(H, W) uint8 or uint16 -> a ``sensor_msgs/Image`` (mono8 or mono16) carrying ``header``."""
    if pixels.ndim != 2 or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"mono_image wants (H, W) uint8 or uint16, got {pixels.shape} {pixels.dtype}")
    return to_image(header, pixels, "mono8" if pixels.dtype == np.uint8 else "mono16")


def to_image(header: Any, pixels: np.ndarray, encoding: str) -> Any:
    """(H, W) or (H, W, C) pixels already in ``encoding``'s layout -> a ``sensor_msgs/Image``, rows unpadded."""
    from sensor_msgs.msg import Image

    msg = Image()
    msg.header = header
    msg.height, msg.width = pixels.shape[:2]
    msg.encoding = encoding
    msg.is_bigendian = int(sys.byteorder == "big")  # 16-bit data goes out in this machine's byte order
    msg.step = pixels.shape[1] * pixels.itemsize * (pixels.shape[2] if pixels.ndim == 3 else 1)
    # an array.array skips the generated setter's per-element check (a Python loop over every byte)
    msg.data = array.array("B", np.ascontiguousarray(pixels).tobytes())
    return msg


def mono_to_array(msg: Any) -> np.ndarray:
    """A mono8/mono16 ``sensor_msgs/Image`` -> (H, W) uint8/uint16 (for subscribers and tests)."""
    dtype = np.dtype(np.uint8 if msg.encoding == "mono8" else np.uint16)
    if msg.encoding == "mono16":
        dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)[:, :msg.width * dtype.itemsize]
    return rows.copy().view(dtype).reshape(msg.height, msg.width).astype(dtype.newbyteorder("="))
