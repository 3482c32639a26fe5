"""What the node publishes per frame, computed from ``StreamTracker.track``'s mask logits (numpy only).

``summarize`` is the one place that turns ``(obj_ids, logits (K, 1, H, W))`` into a label image, per-object
masks, presence, boxes and areas, so it can switch to the tracker's own outputs (object scores, boxes,
uint8 masks) when the tracker provides them, without touching the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

MAX_MONO8_OBJECTS = 255  # label values 1..255 fit mono8; more objects need mono16


@dataclass(frozen=True)
class FrameObjects:
    """One frame's result in output order: object k (0-based) has label value k + 1 in ``labels``.

    obj_ids: K ids. labels: (H, W) uint8 (K <= 255) or uint16, 0 = background. masks: (K, H, W) bool,
    each object's own mask (masks of different objects may overlap; ``labels`` shows one per pixel).
    presence: (K,) float32 in [0, 1]. boxes: per object ``[x0, y0, x1, y1]`` pixel edges (x1, y1 exclusive)
    or None when the mask is empty. areas: (K,) int64 pixel counts of ``masks``.
    """

    obj_ids: list[int]
    labels: np.ndarray
    masks: np.ndarray
    presence: np.ndarray
    boxes: list[list[int] | None]
    areas: np.ndarray


def summarize(obj_ids: Sequence[int], logits: np.ndarray | None, height: int, width: int) -> FrameObjects:
    """``track``'s ``(obj_ids, logits (K, 1, H, W) float32)`` -> FrameObjects; ``logits`` None means no object.

    A pixel covered by several objects gets the label of the one with the highest logit there.
    """
    ids = [int(i) for i in obj_ids]
    if logits is None or not ids:
        return FrameObjects([], np.zeros((height, width), np.uint8), np.zeros((0, height, width), bool),
                            np.zeros(0, np.float32), [], np.zeros(0, np.int64))
    scores = logits[:, 0]  # (K, H, W)
    masks = scores > 0  # (K, H, W)
    dtype = np.uint8 if len(ids) <= MAX_MONO8_OBJECTS else np.uint16
    winner = np.argmax(scores, axis=0)  # (H, W), the highest logit wins where objects overlap
    labels = np.where(masks.any(axis=0), winner + 1, 0).astype(dtype)
    # a stand-in for the tracker's object score: the official no-object gating pushes absent objects'
    # logits to -1024, so sigmoid(max logit) is ~0 for them and >= 0.5 when any pixel is on
    peak = scores.reshape(len(ids), -1).max(axis=1).astype(np.float64)
    presence = (1.0 / (1.0 + np.exp(-np.clip(peak, -60.0, 60.0)))).astype(np.float32)
    return FrameObjects(ids, labels, masks, presence, [_box(m) for m in masks], masks.sum(axis=(1, 2)))


def _box(mask: np.ndarray) -> list[int] | None:
    """(H, W) bool -> [x0, y0, x1, y1] around the True pixels (x1, y1 exclusive), None when empty."""
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    if cols.size == 0:
        return None
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]


def summary_dict(result: FrameObjects, frame_idx: int, timing: dict[str, float]) -> dict[str, Any]:
    """The per-frame JSON summary (without the header fields, which the node adds).

    ``objects[k]`` is the object with label value ``k + 1`` in the label image.
    """
    objects = [{"label": k + 1, "obj_id": obj_id, "present": bool(result.areas[k] > 0),
                "score": round(float(result.presence[k]), 4), "box": result.boxes[k], "area": int(result.areas[k])}
               for k, obj_id in enumerate(result.obj_ids)]
    height, width = result.labels.shape
    encoding = "mono8" if result.labels.dtype == np.uint8 else "mono16"
    return {"frame_idx": frame_idx, "width": width, "height": height, "label_encoding": encoding,
            "objects": objects, **{k: round(v, 3) for k, v in timing.items()}}
