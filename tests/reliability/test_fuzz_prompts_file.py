"""Property-based fuzzing of the prompts file (issue 12, "keep it found"): any JSON, any flag text either
parses into prompts or raises Sam2rtError -- never another exception -- and parsed prompts apply cleanly."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from sam2rt.errors import Sam2rtError
from sam2rt.prompts_file import apply_prompt, load_prompts, prompts_from_flags

KEYS = ["frame", "obj_id", "points", "labels", "box", "mask"]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

numbers = st.one_of(st.integers(-5, 2000), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                    st.sampled_from([1e308, -0.0, 2**63, 10**400]))
scalars = st.one_of(st.none(), numbers, st.text(max_size=5), st.sampled_from([".", "m.png", "..", "missing.png"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=3), inner, max_size=3)),
                           max_leaves=12)
pairs = st.lists(st.lists(numbers, min_size=0, max_size=3), max_size=4)
field_values = st.one_of(json_values, pairs, st.lists(st.integers(-1, 2), max_size=4), st.lists(numbers, max_size=5))
wild_entries = st.dictionaries(st.sampled_from(KEYS + ["extra"]), field_values, max_size=6)
coords = st.one_of(st.integers(-1, 70), st.floats(-1, 70), st.sampled_from([1e308, 64.0, 48.0, 0.0]))


@st.composite
def plausible_entries(draw: st.DrawFn) -> dict[str, Any]:
    """Nearly valid entries, so the fuzzer reaches the checks behind the shape checks."""
    entry: dict[str, Any] = {"frame": draw(st.integers(-1, 3)), "obj_id": draw(st.integers(-2, 3))}
    kind = draw(st.sampled_from(["points", "box", "both", "mask", "mask+box"]))
    if kind in ("points", "both"):
        n = draw(st.integers(0, 3))
        entry["points"] = [[draw(coords), draw(coords)] for _ in range(n)]
        entry["labels"] = draw(st.lists(st.integers(0, 1), min_size=max(0, n - 1), max_size=n + 1))
    if kind in ("box", "both", "mask+box"):
        entry["box"] = [draw(coords) for _ in range(4)]
    if kind.startswith("mask"):
        entry["mask"] = draw(st.sampled_from(["m.png", "small.png", ".", "missing.png", ""]))
    return entry


documents = st.one_of(json_values, st.lists(st.one_of(wild_entries, plausible_entries()), max_size=4))


class _FakePredictor:
    """Stands in for VideoPredictor: accepts what apply_prompt hands it, as the real one's checks do."""

    def add_new_points_or_box(self, state: Any, frame: int, obj_id: int, points: Any = None, labels: Any = None,
                              box: Any = None) -> tuple[int, list[int], np.ndarray]:
        for arr in (points, box):
            assert arr is None or (arr.dtype == np.float32 and np.isfinite(arr).all())
        return frame, [obj_id], np.zeros((1, 1, 48, 64), np.float32)

    def add_new_mask(self, state: Any, frame: int, obj_id: int, mask: np.ndarray) -> tuple[int, list[int], np.ndarray]:
        assert mask.shape == (48, 64) and mask.dtype == bool
        return frame, [obj_id], np.zeros((1, 1, 48, 64), np.float32)


def _write_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="sam2rt-fuzz-"))
    Image.fromarray(np.full((48, 64), 255, np.uint8)).save(folder / "m.png")
    Image.fromarray(np.full((4, 4), 255, np.uint8)).save(folder / "small.png")  # not the video's size
    return folder


FOLDER = _write_folder()
STATE = {"num_frames": 3, "video_height": 48, "video_width": 64}


@SETTINGS
@given(document=documents)
@example(document=[{"frame": 0, "obj_id": 1, "points": [[1e308, 1]], "labels": [1]}])  # found: float32 inf
@example(document=[{"frame": 0, "obj_id": 1, "box": [1, 1, 1e308, 5]}])
@example(document=[{"frame": 0, "obj_id": 1, "mask": "small.png"}])
@example(document=[[[[]]]] * 3)
def test_fuzz_prompts_file_parser(document: Any) -> None:
    path = FOLDER / "prompts.json"
    try:
        path.write_text(json.dumps(document))
    except (ValueError, OverflowError):  # not serialisable (e.g. 10**400 as float): nothing to test
        return
    try:
        prompts = load_prompts(path)
    except Sam2rtError:
        return
    for prompt in prompts:
        assert isinstance(prompt.frame, int) and prompt.frame >= 0
        for value in (*(c for p in prompt.points or () for c in p), *(prompt.box or ())):
            assert math.isfinite(value) and value >= 0
        try:
            apply_prompt(_FakePredictor(), STATE, prompt)
        except Sam2rtError:
            pass


@SETTINGS
@given(points=st.lists(st.text(max_size=12), max_size=3), box=st.one_of(st.none(), st.text(max_size=20)))
def test_fuzz_prompt_flags(points: list[str], box: str | None) -> None:
    try:
        (prompt,) = prompts_from_flags(points, box)
    except Sam2rtError:
        return
    try:
        apply_prompt(_FakePredictor(), STATE, prompt)
    except Sam2rtError:
        pass
