"""Property-based fuzzing of the public API (issue 12, "keep it found"): ``add_new_points_or_box``,
``add_new_mask`` and the StreamTracker's ``add_new_prompt``, ``track``, ``remove_object``, ``reset``.

Arbitrary arguments either succeed or raise Sam2rtError with the state exactly as before -- never another
exception type. The predictor's state is compared deeply (``snapshot``); the stream tracker through its
public introspection (frame index, object ids, stored results and bytes).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sam2rt.errors import Sam2rtError
from sam2rt.runtime.predictor import VideoPredictor
from sam2rt.runtime.stream import StreamTracker


H, W = 48, 64
# No shrinking phase: it can take minutes on these model calls; a failure prints its reproducing blob.
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck),
                    phases=[Phase.explicit, Phase.reuse, Phase.generate], print_blob=True)

numbers = st.one_of(st.integers(-3, 80), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([1e308, 2**64, -0.0, 63.5]))
ragged = st.lists(st.one_of(numbers, st.lists(numbers, max_size=3)), max_size=4)
arrays = hnp.arrays(st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_]),
                    hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
anything = st.one_of(st.none(), numbers, st.text(max_size=4), ragged, arrays, st.booleans(),
                     st.dictionaries(st.text(max_size=2), numbers, max_size=2))


@st.composite
def clicks(draw: st.DrawFn) -> dict[str, Any]:
    """points/labels/box: nearly valid or anything."""
    n = draw(mostly(st.integers(1, 3), st.just(0)))
    coord = mostly(st.floats(0, 47), st.one_of(st.floats(-5, 70), st.sampled_from([64.0, 1e308, float("nan")])))
    prompt: dict[str, Any] = {}
    if draw(st.sampled_from((True, True, False))):
        prompt["points"] = draw(mostly(st.just([[draw(coord), draw(coord)] for _ in range(n)]), anything))
        prompt["labels"] = draw(mostly(st.lists(st.integers(0, 1), min_size=n, max_size=n),
                                       st.one_of(st.lists(st.integers(-1, 2), min_size=n, max_size=n), anything)))
    if draw(st.booleans()):
        prompt["box"] = draw(mostly(st.lists(coord, min_size=4, max_size=4), anything))
    return prompt




def mostly(valid: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` 3 times in 4 (``one_of`` would weigh every branch of a nested ``one_of`` alike), so that
    successful calls, and failures behind the first checks, are reached often."""
    return st.sampled_from((True, True, True, False)).flatmap(lambda ok: valid if ok else other)


frame_idx = mostly(st.integers(0, 1), st.one_of(st.integers(-2, 3), anything))
obj_ids = mostly(st.integers(1, 3), st.one_of(st.integers(-3, 3), st.sampled_from([2**70, np.int64(1)]), anything))
masks = mostly(hnp.arrays(np.bool_, (H, W)), st.one_of(anything, hnp.arrays(st.sampled_from([np.bool_, np.uint8, np.float32]),
                                       st.sampled_from([(H, W), (8, 8), (1, H, W), (0, 5)]),
                                                  elements=st.integers(0, 1))))


@pytest.fixture(scope="module")
def predictor(exported_tiny_256: Path) -> VideoPredictor:
    return VideoPredictor(exported_tiny_256, progress=False)


@pytest.fixture(scope="module")
def base_state(predictor: VideoPredictor) -> dict[str, Any]:
    """Two frames, object 1 clicked on frame 0 (copied for every example)."""
    rng = np.random.default_rng(0)
    state = predictor.init_state([rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(2)])
    predictor.add_new_points_or_box(state, 0, 1, points=[[30, 20]], labels=[1])
    return state


def _check(call: Callable[[], Any], state: Any, snapshot: Callable[[Any], Any]) -> Any:
    """Run ``call``: success, or Sam2rtError with the state unchanged."""
    before = snapshot(state)
    try:
        return call()
    except Sam2rtError as e:
        event(f"refused: {str(e)[:25]}")
        assert snapshot(state) == before, "a refused call changed the state"
        return None


@SETTINGS
@given(frame=frame_idx, obj_id=obj_ids, prompt=clicks(), clear=st.booleans(), normalize=st.booleans())
@example(frame=1, obj_id=2, prompt={"points": [1, 2, 3], "labels": [1]}, clear=True, normalize=True)
@example(frame=1, obj_id=2, prompt={"points": [[1, 2], [3]], "labels": [1, 1]}, clear=True, normalize=True)
@example(frame=1, obj_id=2, prompt={"box": [50, 40, 10, 10]}, clear=True, normalize=True)
def test_fuzz_add_new_points_or_box(predictor: VideoPredictor, base_state: dict[str, Any],
                                    snapshot: Callable[[Any], Any], frame: Any, obj_id: Any, prompt: dict[str, Any],
                                    clear: bool, normalize: bool) -> None:
    state = copy.deepcopy(base_state)
    result = _check(lambda: predictor.add_new_points_or_box(state, frame, obj_id, clear_old_points=clear,
                                                            normalize_coords=normalize, **prompt), state, snapshot)
    event("accepted" if result is not None else "refused")
    if result is not None:
        _, ids, out = result
        assert out.shape == (len(ids), 1, H, W) and out.dtype == np.float32


@SETTINGS
@given(frame=frame_idx, obj_id=obj_ids, mask=masks)
@example(frame=1, obj_id=2, mask=[[1, 0], [1]])
def test_fuzz_add_new_mask(predictor: VideoPredictor, base_state: dict[str, Any], snapshot: Callable[[Any], Any],
                           frame: Any, obj_id: Any, mask: Any) -> None:
    state = copy.deepcopy(base_state)
    result = _check(lambda: predictor.add_new_mask(state, frame, obj_id, mask), state, snapshot)
    event("accepted" if result is not None else "refused")
    if result is not None:
        assert result[2].shape == (len(result[1]), 1, H, W)


# --------------------------------------------------------------------------- StreamTracker


@pytest.fixture(scope="module")
def tracker(exported_tiny_256: Path) -> StreamTracker:
    return StreamTracker(exported_tiny_256)


def _public(tracker: StreamTracker) -> Any:
    return tracker.frame_idx, tracker.obj_ids, tracker.stored_bytes()


frames = st.one_of(hnp.arrays(np.uint8, st.just((H, W, 3)), elements=st.integers(0, 255)),
                   hnp.arrays(st.sampled_from([np.uint8, np.float32]),
                              st.sampled_from([(H, W, 3), (W, H, 3), (H, W), (0, 0, 3), (H, W, 4)])),
                   anything)
operations = st.lists(st.one_of(
    st.tuples(st.just("prompt"), st.one_of(st.just("current"), frame_idx), obj_ids, clicks()),
    st.tuples(st.just("mask"), st.just("current"), obj_ids, masks),
    st.tuples(st.just("track"), frames),
    st.tuples(st.just("remove"), obj_ids),
    st.tuples(st.just("reset")),
), min_size=1, max_size=4)


def _apply(tracker: StreamTracker, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind in ("prompt", "mask"):
        frame = tracker.frame_idx if isinstance(op[1], str) and op[1] == "current" else op[1]
        args = dict(op[3]) if kind == "prompt" else {"mask": op[3]}
        if "box" in args:
            args["bbox"] = args.pop("box")  # the camera-predictor idiom's name
        tracker.add_new_prompt(frame, op[2], **args)
    elif kind == "track":
        tracker.track(op[1])
    elif kind == "remove":
        tracker.remove_object(op[1])
    else:
        tracker.reset()


@settings(SETTINGS, max_examples=25)  # each example runs several tracking steps
@given(ops=operations)
@example(ops=[("remove", [])])  # found by this test: an unhashable id raised TypeError
def test_fuzz_stream_tracker(tracker: StreamTracker, ops: list[tuple[Any, ...]]) -> None:
    tracker.load_first_frame(np.full((H, W, 3), 90, np.uint8))
    tracker.add_new_prompt(0, 1, points=[[30, 20]], labels=[1])
    for op in ops:
        _check(lambda: _apply(tracker, op), tracker, _public)
