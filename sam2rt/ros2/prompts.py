"""Prompts that arrive as ROS messages: JSON prompts (our prompts-file schema) and clicks (PointStamped).

JSON prompts (``std_msgs/String``) hold one entry or a list of entries of the ``sam2rt track`` prompts file
(see :mod:`sam2rt.prompts_file`), validated by the same code, except that ``"frame"`` is optional: when
given it is the stream frame index (``frame_idx`` of the node's per-frame summary). Mask paths are read
on the node's machine, relative to its working directory.

Clicks (``geometry_msgs/PointStamped``): ``point.x, point.y`` in image pixels; ``point.z < 0`` is a
negative click (not on the object), anything else positive (rqt_image_view publishes z = 0). The object id
travels in ``header.frame_id`` as a decimal integer ("3"); any other frame_id (empty, or a TF frame) means
the node's ``click_obj_id`` parameter, where 0 asks for a new object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sam2rt.errors import Sam2rtError
# the file schema's own validation, so the topic and the file can never disagree
from sam2rt.prompts_file import Prompt, _check_unique, _parse_entry, read_mask


@dataclass(frozen=True)
class JsonPrompt:
    """One validated entry; ``frame`` None when the message did not name a frame."""

    prompt: Prompt
    frame: int | None


@dataclass(frozen=True)
class Click:
    """A click in frame pixels; obj_id None asks for a new object."""

    x: float
    y: float
    label: int  # 1 on the object, 0 not on it
    obj_id: int | None


def parse_json_prompts(text: str, base: Path | None = None) -> list[JsonPrompt]:
    """A JSON prompt message -> validated entries in message order; Sam2rtError says what is wrong."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise Sam2rtError(f"prompt message is not valid JSON ({e}); send e.g. "
                          '{"obj_id": 1, "box": [x0, y0, x1, y1]}') from None
    entries = data if isinstance(data, list) else [data]
    if not entries:
        raise Sam2rtError("prompt message is an empty list; send one entry or a list of entries")
    out = []
    for i, entry in enumerate(entries):
        where = f"prompt message entry {i}"
        frame = entry.get("frame") if isinstance(entry, dict) else None
        full = {"frame": 0, **entry} if isinstance(entry, dict) else entry  # "frame" is optional here
        prompt = _parse_entry(full, where, base or Path.cwd())
        out.append(JsonPrompt(prompt, None if frame is None else prompt.frame))
    _check_unique([p.prompt for p in out])
    return out


def parse_click(x: float, y: float, z: float, frame_id: str, default_obj_id: int) -> Click:
    """A PointStamped's fields -> Click; ``default_obj_id`` applies when frame_id is not an integer."""
    if not (np.isfinite(x) and np.isfinite(y) and np.isfinite(z)):
        raise Sam2rtError(f"click ({x}, {y}, {z}) is not finite; publish pixel coordinates")
    text = frame_id.strip()
    obj_id = int(text) if text.lstrip("-").isdigit() else default_obj_id
    if obj_id < 0:
        raise Sam2rtError(f"click object id {obj_id} (header.frame_id {frame_id!r}) must be >= 1, "
                          "or 0 for a new object")
    return Click(float(x), float(y), 0 if z < 0 else 1, obj_id or None)


def check_fits(prompts: list[JsonPrompt], width: int, height: int) -> None:
    """Check coordinates and mask sizes against the frame before any entry is applied (all or nothing)."""
    for item in prompts:
        p = item.prompt
        coords = list(p.points or ()) + ([p.box[:2], p.box[2:]] if p.box else [])
        if any(x > width or y > height for x, y in coords):
            raise Sam2rtError(f"{p.where}: points/box {coords} fall outside the {width}x{height} frame")
        if p.mask is not None and read_mask(p.mask, p.where).shape != (height, width):
            raise Sam2rtError(f"{p.where}: mask {p.mask} is not {width}x{height}, the stream's frame size")


def prompt_kwargs(prompt: Prompt) -> dict[str, Any]:
    """``StreamTracker.add_new_prompt`` keyword arguments for one validated prompt."""
    if prompt.mask is not None:
        return {"mask": read_mask(prompt.mask, prompt.where)}
    kwargs: dict[str, Any] = {}
    if prompt.points is not None:
        kwargs["points"] = np.asarray(prompt.points, np.float32)
        kwargs["labels"] = np.asarray(prompt.labels, np.int32)
    if prompt.box is not None:
        kwargs["bbox"] = np.asarray(prompt.box, np.float32)
    return kwargs
