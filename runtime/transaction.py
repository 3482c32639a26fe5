"""Validate first, then change state: the object limit, and the undo of a prompt that failed half-way.

``VideoPredictor`` checks every argument and decodes the frame before it registers an object; what can
still fail after that (a backend error, an interrupt) is undone by ``rolled_back_on_error``, so a failed
``add_new_points_or_box`` never leaves an object registered without a prompt.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from sam2rt.errors import Sam2rtError

_PER_OBJECT = ("point_inputs_per_obj", "mask_inputs_per_obj", "frames_tracked_per_obj", "output_dict_per_obj",
               "temp_output_dict_per_obj")


def check_new_object(state: dict[str, Any], obj_id: int, limit: int) -> None:
    """A new object id fits the model's ``max_objects`` (every object is a row of each batched step)."""
    if obj_id not in state["obj_id_to_idx"] and len(state["obj_ids"]) >= limit:
        raise Sam2rtError(f"cannot add object {obj_id}: this model tracks at most {limit} objects (export "
                          f"--max-objects); tracking {state['obj_ids']}. Remove one first, or re-export with a "
                          "larger --max-objects (memory and time grow with it)")


@contextmanager
def rolled_back_on_error(state: dict[str, Any], obj_id: int, frame_idx: int) -> Iterator[None]:
    """Undo a prompt on ``frame_idx`` that fails inside the block: a new object is unregistered, an existing
    object's prompts and results on that frame are put back."""
    idx = state["obj_id_to_idx"].get(obj_id)
    prompts = ("point_inputs_per_obj", "mask_inputs_per_obj")
    outputs = ("temp_output_dict_per_obj", "output_dict_per_obj")
    saved_prompts = {} if idx is None else {k: dict(state[k][idx]) for k in prompts}
    saved_outputs = {} if idx is None else {k: (dict(state[k][idx].cond), dict(state[k][idx].non_cond))
                                            for k in outputs}
    try:
        yield
    except BaseException:
        if idx is None:
            _unregister(state, obj_id)
        else:
            for k, value in saved_prompts.items():
                state[k][idx] = value
            for k, (cond, non_cond) in saved_outputs.items():
                state[k][idx].cond, state[k][idx].non_cond = cond, non_cond
        raise


def _unregister(state: dict[str, Any], obj_id: int) -> None:
    """Remove an object registered last (the highest index), if it was registered at all."""
    idx = state["obj_id_to_idx"].pop(obj_id, None)
    if idx is None:
        return
    state["obj_idx_to_id"].pop(idx, None)
    state["obj_ids"] = list(state["obj_id_to_idx"])
    for key in _PER_OBJECT:
        state[key].pop(idx, None)
