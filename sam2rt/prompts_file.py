"""The prompts file of ``sam2rt track``: which objects to track, from which clicks, boxes or masks.

A prompts file is a JSON list; each entry prompts one object on one frame::

    [
      {"frame": 0,  "obj_id": 1, "points": [[210, 350], [250, 220]], "labels": [1, 1]},
      {"frame": 0,  "obj_id": 2, "box": [300, 0, 500, 400]},
      {"frame": 0,  "obj_id": 3, "box": [600, 100, 700, 300], "points": [[650, 200]], "labels": [0]},
      {"frame": 20, "obj_id": 4, "mask": "masks/cup.png"}
    ]

Fields:

- ``frame`` (int, >= 0): index of the prompted frame (0 = first frame of the video).
- ``obj_id`` (int): the object's id; the same id on several entries is the same object prompted again
  on another frame. Masks are written under this id.
- ``points`` ([[x, y], ...]) with ``labels`` ([1 or 0, ...], one per point): clicks in pixel
  coordinates of the video (x to the right, y down); 1 = on the object, 0 = not on the object.
- ``box`` ([x0, y0, x1, y1]): a box around the object in video pixels, x0 < x1 and y0 < y1. It may be
  combined with ``points``/``labels`` (the box comes first, as in the official predictor).
- ``mask`` ("path.png"): a mask prompt instead of points/box, relative to the JSON file's folder; a PNG
  at the video's resolution whose non-zero pixels are the object (grey, palette or colour; alpha is
  ignored).

An entry has points/labels and/or a box, or a mask -- never both kinds -- and each (frame, obj_id)
appears at most once. ``load_prompts`` checks all of this and names the entry and the fix when
something is wrong; ``apply_prompt`` hands one entry to a ``VideoPredictor`` (or the official
``SAM2VideoPredictor``). ``prompts_from_flags`` builds the one-object prompt of the CLI shortcuts
``--point X,Y[,LABEL]`` (repeatable) and ``--box X0,Y0,X1,Y1``.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from sam2rt.errors import Sam2rtError

_KEYS = ("frame", "obj_id", "points", "labels", "box", "mask")
Point = tuple[float, float]
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Prompt:
    """One prompt: clicks and/or a box, or a mask, for object ``obj_id`` on frame ``frame``.

    points: (x, y) video pixels; labels: 1 positive / 0 negative, one per point; box: (x0, y0, x1, y1);
    mask: path of a PNG (non-zero = object). ``where`` names the prompt's origin in error messages.
    """

    frame: int
    obj_id: int
    points: tuple[Point, ...] | None = None
    labels: tuple[int, ...] | None = None
    box: Box | None = None
    mask: Path | None = None
    where: str = "prompt"


# --------------------------------------------------------------------------- file


def load_prompts(path: str | Path) -> list[Prompt]:
    """Read and validate a prompts file; entries are returned in file order.

    Raises Sam2rtError naming the file, the entry index and what to change.
    """
    path = Path(path)
    return parse_prompts(_read_json_list(path), str(path), path.parent)


def parse_prompts(entries: Sequence[Any], where: str, base: Path) -> list[Prompt]:
    """Validate prompt entries already read from JSON (or YAML): the list of a prompts file.

    where: names the list in error messages (entries become "<where> entry <i>"); base: the folder that
    mask paths are relative to. Raises Sam2rtError as ``load_prompts`` does.
    """
    if not isinstance(entries, list) or not entries:
        raise Sam2rtError(f"{where}: prompts must be a non-empty list of prompt entries, e.g. "
                          '[{"frame": 0, "obj_id": 1, "points": [[100, 200]], "labels": [1]}]')
    prompts = [_parse_entry(entry, f"{where} entry {i}", base) for i, entry in enumerate(entries)]
    _check_unique(prompts)
    return prompts


def _read_json_list(path: Path) -> list[Any]:
    if path.is_dir():
        raise Sam2rtError(f"prompts file {path} is a folder; pass the path of the JSON prompts file in it")
    if not path.is_file():
        raise Sam2rtError(f"prompts file {path} does not exist; pass the path of a JSON prompts file")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise Sam2rtError(f"{path} is not valid JSON ({e}); see `sam2rt track --help` for the format") from None
    except RecursionError:  # brackets nested thousands deep: not a prompts file
        raise Sam2rtError(f"{path} nests JSON lists/objects too deeply to be a prompts file; see "
                          "`sam2rt track --help` for the format") from None
    if not isinstance(data, list) or not data:
        raise Sam2rtError(f"{path} must hold a non-empty JSON list of prompt entries, e.g. "
                          '[{"frame": 0, "obj_id": 1, "points": [[100, 200]], "labels": [1]}]')
    return data


def _parse_entry(entry: Any, where: str, base: Path) -> Prompt:
    """One JSON object -> Prompt, with every field checked."""
    if not isinstance(entry, dict):
        raise Sam2rtError(f"{where}: an entry must be a JSON object like "
                          f'{{"frame": 0, "obj_id": 1, "box": [x0, y0, x1, y1]}}, got {entry!r}')
    unknown = sorted(set(entry) - set(_KEYS))
    if unknown:
        raise Sam2rtError(f"{where}: unknown field(s) {', '.join(unknown)}; valid fields: {', '.join(_KEYS)}")
    for key in ("frame", "obj_id"):
        if key not in entry:
            raise Sam2rtError(f"{where}: missing \"{key}\"; every entry needs \"frame\" and \"obj_id\" integers")
    frame, obj_id = _int(entry["frame"], where, "frame"), _int(entry["obj_id"], where, "obj_id")
    if frame < 0:
        raise Sam2rtError(f"{where}: \"frame\" is {frame}; frame indices start at 0")
    mask = _mask_path(entry["mask"], where, base) if "mask" in entry else None
    points, labels = _points_labels(entry.get("points"), entry.get("labels"), where)
    box = _box(entry["box"], where) if "box" in entry else None
    if mask is not None and (points is not None or box is not None):
        raise Sam2rtError(f"{where}: give either \"mask\" or \"points\"/\"labels\"/\"box\", not both; "
                          "split it into two entries on different frames or drop one")
    if mask is None and points is None and box is None:
        raise Sam2rtError(f"{where}: no prompt; add \"points\" with \"labels\", a \"box\", or a \"mask\"")
    return Prompt(frame, obj_id, points, labels, box, mask, where)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)


def _int(value: Any, where: str, key: str) -> int:
    if not _is_int(value):
        raise Sam2rtError(f"{where}: \"{key}\" must be an integer, got {value!r}")
    return int(value)


def _points_labels(points: Any, labels: Any, where: str) -> tuple[tuple[Point, ...] | None, tuple[int, ...] | None]:
    if points is None and labels is None:
        return None, None
    if points is None or labels is None:
        raise Sam2rtError(f"{where}: \"points\" and \"labels\" go together, one label (1 or 0) per point")
    ok = isinstance(points, list) and points and all(
        isinstance(p, list) and len(p) == 2 and all(_is_number(v) for v in p) for p in points)
    if not ok:
        raise Sam2rtError(f"{where}: \"points\" must be a non-empty list of [x, y] pixel pairs, got {points!r}")
    if not isinstance(labels, list) or not all(_is_int(v) and v in (0, 1) for v in labels):
        raise Sam2rtError(f"{where}: \"labels\" must be a list of 1 (on the object) or 0 (not on it), got {labels!r}")
    if len(labels) != len(points):
        raise Sam2rtError(f"{where}: {len(points)} points but {len(labels)} labels; give one label per point")
    if any(x < 0 or y < 0 for x, y in points):
        raise Sam2rtError(f"{where}: point coordinates must be >= 0 video pixels, got {points!r}")
    return tuple((float(x), float(y)) for x, y in points), tuple(int(v) for v in labels)


def _box(box: Any, where: str) -> Box:
    if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
        raise Sam2rtError(f"{where}: \"box\" must be 4 numbers [x0, y0, x1, y1] in video pixels, got {box!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if min(x0, y0) < 0 or not (x0 < x1 and y0 < y1):
        raise Sam2rtError(f"{where}: \"box\" {box!r} must have 0 <= x0 < x1 and 0 <= y0 < y1 "
                          "(top-left corner first, then bottom-right)")
    return x0, y0, x1, y1


def _mask_path(value: Any, where: str, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise Sam2rtError(f"{where}: \"mask\" must be the path of a PNG file, relative to the prompts file")
    path = base / value
    if path.is_dir():
        raise Sam2rtError(f"{where}: \"mask\" {value!r} is the folder {path.resolve()}, not a PNG file; name the "
                          "mask file, relative to the prompts file's folder")
    if not path.is_file():
        raise Sam2rtError(f"{where}: mask file {value!r} does not exist in {base.resolve()} (mask paths are "
                          "relative to the prompts file's folder)")
    if not read_mask(path, where).any():
        raise Sam2rtError(f"{where}: mask {path} has no non-zero pixel; the object must be non-zero")
    return path


def read_mask(path: Path, where: str = "mask") -> np.ndarray:
    """A PNG mask -> (H, W) bool, True where any colour channel is non-zero (alpha is ignored)."""
    try:
        with Image.open(path) as image:
            if image.format != "PNG":
                raise Sam2rtError(f"{where}: {path} is a {image.format} image; save the mask as PNG")
            arr = np.asarray(image)  # palette images give indices: index 0 = background
    except Image.DecompressionBombError as e:
        raise Sam2rtError(f"{where}: mask {path} is too large to decode safely ({e}); save it at the "
                          "video's resolution") from None
    except OSError as e:
        raise Sam2rtError(f"{where}: cannot read mask {path} ({e}); save it as a PNG") from None
    if arr.ndim == 3:
        arr = arr[..., :3] if arr.shape[2] >= 3 else arr[..., :1]  # drop alpha
        arr = arr.any(axis=2)
    return arr != 0


def _check_unique(prompts: Sequence[Prompt]) -> None:
    seen: dict[tuple[int, int], str] = {}
    for p in prompts:
        key = (p.frame, p.obj_id)
        if key in seen:
            raise Sam2rtError(f"{p.where}: obj_id {p.obj_id} is already prompted on frame {p.frame} by "
                              f"{seen[key]}; merge the two entries into one")
        seen[key] = p.where


# --------------------------------------------------------------------------- CLI shortcuts


def prompts_from_flags(points: Sequence[str], box: str | None) -> list[Prompt]:
    """``--point X,Y[,LABEL]`` (repeatable) and ``--box X0,Y0,X1,Y1`` -> one prompt: obj_id 1, frame 0."""
    if not points and box is None:
        raise Sam2rtError("no prompt: pass --prompts FILE, or --point X,Y[,LABEL] (repeatable) and/or "
                          "--box X0,Y0,X1,Y1")
    parsed = [_parse_point_flag(text) for text in points]
    entry: dict[str, Any] = {"frame": 0, "obj_id": 1}
    if parsed:
        entry["points"] = [[x, y] for x, y, _ in parsed]
        entry["labels"] = [label for _, _, label in parsed]
    if box is not None:
        entry["box"] = _numbers(box, "--box", 4, "X0,Y0,X1,Y1")
    return [_parse_entry(entry, "--point/--box", Path("."))]


_EXAMPLES = {"--point": "420,260", "--box": "100,80,300,240"}  # valid ones: x0 < x1, y0 < y1


def _parse_point_flag(text: str) -> tuple[float, float, int]:
    values = _numbers(text, "--point", (2, 3), "X,Y or X,Y,LABEL")
    label = values[2] if len(values) == 3 else 1
    if label not in (0, 1):
        raise Sam2rtError(f"--point {text}: LABEL must be 1 (on the object) or 0 (not on it)")
    return values[0], values[1], int(label)


def _numbers(text: str, flag: str, count: int | tuple[int, ...], form: str) -> list[float]:
    counts = (count,) if isinstance(count, int) else count
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in counts or not all(np.isfinite(values)):
        raise Sam2rtError(f"{flag} {text!r}: expected {form} as comma-separated numbers without spaces, e.g. "
                          f"{flag} {_EXAMPLES[flag]}")
    return values


# --------------------------------------------------------------------------- predictor


def apply_prompt(predictor: Any, state: Any, prompt: Prompt) -> tuple[int, list[int], np.ndarray]:
    """Add one prompt to a predictor's state (``add_new_points_or_box`` or ``add_new_mask``).

    Works with sam2rt's ``VideoPredictor`` and the official ``SAM2VideoPredictor`` alike; returns what
    they return, ``(frame_idx, obj_ids, masks (K, 1, H, W))``. Problems that need the video (frame out of
    range, coordinates outside the frame, mask size) raise Sam2rtError naming the prompt.
    """
    num_frames, height, width = state["num_frames"], state["video_height"], state["video_width"]
    if prompt.frame >= num_frames:
        raise Sam2rtError(f"{prompt.where}: frame {prompt.frame} is past the end; the video has frames "
                          f"0..{num_frames - 1}")
    mask = _video_mask(prompt, height, width) if prompt.mask is not None else None
    _check_inside(prompt, width, height)
    try:
        if mask is not None:
            return predictor.add_new_mask(state, prompt.frame, prompt.obj_id, mask)
        points = None if prompt.points is None else np.asarray(prompt.points, np.float32)
        labels = None if prompt.labels is None else np.asarray(prompt.labels, np.int32)
        box = None if prompt.box is None else np.asarray(prompt.box, np.float32)
        return predictor.add_new_points_or_box(state, prompt.frame, prompt.obj_id, points=points,
                                               labels=labels, box=box)
    except Sam2rtError as e:
        raise Sam2rtError(f"{prompt.where}: {e}") from None


def _check_inside(prompt: Prompt, width: int, height: int) -> None:
    """Clicks and box corners inside the video (checked here, in video pixels, before any float32 cast)."""
    corners = [] if prompt.box is None else [prompt.box[:2], prompt.box[2:]]
    outside = [p for p in (*corners, *(prompt.points or ())) if not (0 <= p[0] <= width and 0 <= p[1] <= height)]
    if outside:
        x, y = outside[0]
        raise Sam2rtError(f"{prompt.where}: ({x:g}, {y:g}) is outside the {width}x{height} video; use pixel "
                          f"coordinates with 0 <= x <= {width} and 0 <= y <= {height}")


def _video_mask(prompt: Prompt, height: int, width: int) -> np.ndarray:
    mask = read_mask(prompt.mask, prompt.where)
    if mask.shape != (height, width):
        raise Sam2rtError(f"{prompt.where}: mask {prompt.mask} is {mask.shape[1]}x{mask.shape[0]} but the video is "
                          f"{width}x{height}; save the mask at the video's resolution")
    return mask
