"""Start tracking from "segment everything": the generator's masks become mask prompts of new objects.

A robot with nobody to click segments everything on one frame, keeps what matters (large enough, confident
enough, at most so many) and tracks it. ``select_masks`` is the filter; ``seed_stream`` (``StreamTracker``,
on its current frame) and ``seed_video`` (``VideoPredictor``, on any frame) add the kept masks as objects,
never more than the model's object limit (``max_objects`` in its manifest) allows. When the generator finds
nothing they add nothing and return an empty list.
"""

from __future__ import annotations

from typing import Any, Sequence

from sam2rt.errors import Sam2rtError
from sam2rt.runtime.amg_utils import decode_segmentation


def select_masks(records: Sequence[dict[str, Any]], min_area: int = 0, min_score: float = 0.0,
                 max_count: int | None = None) -> list[dict[str, Any]]:
    """The generator's records worth tracking: ``area >= min_area`` pixels and ``predicted_iou >= min_score``,
    best predicted IoU first (then larger area), at most ``max_count`` (None: all)."""
    if min_area < 0 or (max_count is not None and max_count < 0):
        raise Sam2rtError(f"min_area and max_count must be >= 0, got {min_area} and {max_count}")
    kept = [r for r in records if r["area"] >= min_area and r["predicted_iou"] >= min_score]
    kept.sort(key=lambda r: (-r["predicted_iou"], -r["area"]))
    return kept if max_count is None else kept[:max_count]


def _plan(records: Sequence[dict[str, Any]], existing: list[int], limit: int, first_obj_id: int | None,
          min_area: int, min_score: float, max_objects: int | None) -> list[tuple[int, Any]]:
    room = max(limit - len(existing), 0)
    count = room if max_objects is None else min(max_objects, room)
    chosen = select_masks(records, min_area, min_score, count)
    start = (max(existing, default=0) + 1) if first_obj_id is None else first_obj_id
    ids = list(range(start, start + len(chosen)))
    if set(ids) & set(existing):
        raise Sam2rtError(f"object ids {sorted(set(ids) & set(existing))} are already tracked; pass a "
                          "first_obj_id above them (or None to continue after the largest)")
    return [(obj_id, decode_segmentation(r["segmentation"])) for obj_id, r in zip(ids, chosen)]


def seed_stream(tracker: Any, records: Sequence[dict[str, Any]], min_area: int = 0, min_score: float = 0.0,
                max_objects: int | None = None, first_obj_id: int | None = None) -> list[int]:
    """Add the selected masks as new objects of a ``StreamTracker`` on its current frame.

    records: ``AutomaticMaskGenerator.generate`` output for that frame (any output_mode). The count is capped by
    ``max_objects`` and by the room the model leaves (``max_objects`` of its manifest minus the tracked
    objects). Object ids continue after the largest tracked id unless ``first_obj_id`` is given.
    Returns the new object ids (empty when nothing passes the filter).
    """
    limit = tracker.engine.manifest.bank.max_objects
    plan = _plan(records, tracker.obj_ids, limit, first_obj_id, min_area, min_score, max_objects)
    for obj_id, mask in plan:
        tracker.add_new_prompt(tracker.frame_idx, obj_id, mask=mask)
    return [obj_id for obj_id, _ in plan]


def seed_video(predictor: Any, state: dict[str, Any], frame_idx: int, records: Sequence[dict[str, Any]],
               min_area: int = 0, min_score: float = 0.0, max_objects: int | None = None,
               first_obj_id: int | None = None) -> list[int]:
    """``seed_stream`` for a ``VideoPredictor``: the masks become ``add_new_mask`` prompts on ``frame_idx``;
    returns the new object ids (then ``propagate_in_video`` as usual)."""
    limit = predictor.engine.manifest.bank.max_objects
    plan = _plan(records, list(state["obj_ids"]), limit, first_obj_id, min_area, min_score, max_objects)
    for obj_id, mask in plan:
        predictor.add_new_mask(state, frame_idx, obj_id, mask)
    return [obj_id for obj_id, _ in plan]
