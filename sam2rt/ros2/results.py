"""What the node publishes per frame, from ``StreamTracker.track(rgb, output="result")`` (numpy only).

``summarize`` is the one place that turns a :class:`~sam2rt.runtime.outputs.TrackResult` into a label image,
per-object masks, presence, boxes and areas. It never makes full-size float logits: masks, object scores and
boxes come from the tracker; only where masks overlap are logits interpolated, at those pixels alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sam2rt.runtime.outputs import TrackResult, logits_at

MAX_MONO8_OBJECTS = 255  # label values 1..255 fit mono8; more objects need mono16
OVERLAP_CHUNK = 1 << 16  # overlapping pixels resolved at a time: bounds the float temporary to (K, chunk)


@dataclass(frozen=True)
class FrameObjects:
    """One frame's result in output order: object k (0-based) has label value k + 1 in ``labels``.

    obj_ids: K ids. labels: (H, W) uint8 (K <= 255) or uint16, 0 = background. masks: (K, H, W) bool,
    each object's own mask (masks of different objects may overlap; ``labels`` shows one per pixel).
    presence: (K,) float32 in [0, 1], sigmoid of the object score logit. present: (K,) bool, the tracker's
    presence (object score logit > 0). boxes: per object ``[x0, y0, x1, y1]`` pixel edges (x1, y1 exclusive)
    or None when the mask is empty. areas: (K,) int64 pixel counts of ``masks``.
    """

    obj_ids: list[int]
    labels: np.ndarray
    masks: np.ndarray
    presence: np.ndarray
    present: np.ndarray
    boxes: list[list[int] | None]
    areas: np.ndarray


def summarize(result: TrackResult | None, height: int, width: int) -> FrameObjects:
    """``track(rgb, output="result", mask_dtype=bool)``'s TrackResult -> FrameObjects; None means no object.

    A pixel covered by several objects gets the label of the one with the highest bilinear logit there
    (ties: the earlier object in output order); see :func:`label_image`.
    """
    if result is None or not result.obj_ids:
        return FrameObjects([], np.zeros((height, width), np.uint8), np.zeros((0, height, width), bool),
                            np.zeros(0, np.float32), np.zeros(0, bool), [], np.zeros(0, np.int64))
    masks = np.asarray(result.masks, bool)
    scores = np.asarray(result.scores, np.float64)
    presence = (1.0 / (1.0 + np.exp(-np.clip(scores, -60.0, 60.0)))).astype(np.float32)
    boxes = [None if box[0] < 0 else [int(box[0]), int(box[1]), int(box[2]) + 1, int(box[3]) + 1]
             for box in result.boxes]  # inclusive corners -> pixel edges (x1, y1 exclusive)
    return FrameObjects([int(i) for i in result.obj_ids], label_image(masks, result.low_res_logits), masks,
                        presence, np.asarray(result.present, bool).copy(), boxes,
                        masks.sum(axis=(1, 2), dtype=np.int64))


def label_image(masks: np.ndarray, low_res_logits: np.ndarray) -> np.ndarray:
    """(K, H, W) bool masks -> (H, W) labels: k + 1 where object k's mask is on, 0 where no mask is.

    Where several masks are on, the object whose logit, bilinearly interpolated from ``low_res_logits``
    (K, 1, h, w) exactly as the masks were made (``runtime.outputs.logits_at``), is highest wins; a tie goes
    to the earlier object. Logits are computed only at those pixels, ``OVERLAP_CHUNK`` pixels at a time.
    """
    K, H, W = masks.shape
    labels = np.zeros((H, W), np.uint8 if K <= MAX_MONO8_OBJECTS else np.uint16)
    covered, overlap = np.zeros((H, W), bool), np.zeros((H, W), bool)
    for k in range(K):
        labels[masks[k]] = k + 1
        overlap |= covered & masks[k]
        covered |= masks[k]
    ys, xs = np.nonzero(overlap)
    for i in range(0, ys.size, OVERLAP_CHUNK):
        y, x = ys[i:i + OVERLAP_CHUNK], xs[i:i + OVERLAP_CHUNK]
        logits = np.where(masks[:, y, x], logits_at(low_res_logits, (H, W), y, x), -np.inf)
        labels[y, x] = np.argmax(logits, axis=0) + 1  # argmax: the first of equal maxima
    return labels


def summary_dict(result: FrameObjects, frame_idx: int, timing: dict[str, float]) -> dict[str, Any]:
    """The per-frame JSON summary (without the header fields, which the node adds).

    ``objects[k]`` is the object with label value ``k + 1`` in the label image.
    """
    objects = [{"label": k + 1, "obj_id": obj_id, "present": bool(result.present[k]),
                "score": round(float(result.presence[k]), 4), "box": result.boxes[k], "area": int(result.areas[k])}
               for k, obj_id in enumerate(result.obj_ids)]
    height, width = result.labels.shape
    encoding = "mono8" if result.labels.dtype == np.uint8 else "mono16"
    return {"frame_idx": frame_idx, "width": width, "height": height, "label_encoding": encoding,
            "objects": objects, **{k: round(v, 3) for k, v in timing.items()}}
