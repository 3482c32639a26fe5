"""Tracking started from "segment everything" on a real clip: StreamTracker and VideoPredictor seeded with the
generator's masks, the object limit kept, and nothing added (no crash) when the generator finds nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sam2rt.errors import Sam2rtError
from sam2rt.runtime.automatic import AutomaticMaskGenerator
from sam2rt.runtime.frames import open_frames
from sam2rt.runtime.predictor import VideoPredictor
from sam2rt.runtime.seeding import seed_stream, seed_video, select_masks
from sam2rt.runtime.stream import StreamTracker

# random weights: IoU predictions near 0.5, low-contrast masks; NMS off so that many masks survive
MANY = dict(points_per_side=4, pred_iou_thresh=0.45, stability_score_thresh=0.1, stability_score_offset=0.05,
            box_nms_thresh=1.0)


@pytest.fixture(scope="module")
def clip(shared_data: Path) -> list[np.ndarray]:
    frames = open_frames(str(shared_data / "videos" / "cups.mp4"))
    try:
        return [np.asarray(frames[i]) for i in range(4)]
    finally:
        getattr(frames, "close", lambda: None)()


@pytest.fixture(scope="module")
def records(exported_tiny_256, clip) -> list[dict]:
    found = AutomaticMaskGenerator(exported_tiny_256, **MANY).generate(clip[0])
    assert len(found) > 16, "the test needs more masks than the model's object limit"
    return found


def test_select_masks_filters_and_orders(records) -> None:
    areas = sorted(r["area"] for r in records)
    kept = select_masks(records, min_area=areas[len(areas) // 2], max_count=5)
    assert 0 < len(kept) <= 5 and all(r["area"] >= areas[len(areas) // 2] for r in kept)
    ious = [r["predicted_iou"] for r in kept]
    assert ious == sorted(ious, reverse=True)
    assert select_masks(records, min_score=1.1) == []
    with pytest.raises(Sam2rtError):
        select_masks(records, max_count=-1)


def test_stream_seeded_from_generator(exported_tiny_256, clip, records) -> None:
    tracker = StreamTracker(exported_tiny_256)
    limit = tracker.engine.manifest.bank.max_objects
    tracker.load_first_frame(clip[0])
    tracker.add_new_prompt(0, 7, points=[[100, 100]], labels=[1])  # one object already tracked
    ids = seed_stream(tracker, records)
    assert ids == list(range(8, 8 + limit - 1)), "ids continue after 7; the limit leaves room for 15 more"
    assert len(tracker.obj_ids) == limit
    assert seed_stream(tracker, records) == []  # full: nothing more, no error
    for frame in clip[1:]:
        obj_ids, logits = tracker.track(frame)
        assert obj_ids == [7, *ids] and logits.shape == (limit, 1, *frame.shape[:2])


def test_nothing_found_adds_nothing(exported_tiny_256, clip) -> None:
    strict = AutomaticMaskGenerator(exported_tiny_256, points_per_side=2)  # official thresholds: none survive
    found = strict.generate(clip[0])
    assert found == []
    tracker = StreamTracker(exported_tiny_256)
    tracker.load_first_frame(clip[0])
    assert seed_stream(tracker, found) == [] and tracker.obj_ids == []
    tracker.add_new_prompt(0, 1, points=[[50, 60]], labels=[1])  # the tracker is still usable
    assert tracker.track(clip[1])[0] == [1]


def test_video_predictor_seeded(exported_tiny_256, clip, records) -> None:
    predictor = VideoPredictor(exported_tiny_256, progress=False)
    state = predictor.init_state(clip)
    ids = seed_video(predictor, state, 0, records, max_objects=3, min_score=0.0)
    assert ids == [1, 2, 3] and state["obj_ids"] == [1, 2, 3]
    frames = list(predictor.propagate_in_video(state, max_frame_num_to_track=2))
    assert [f for f, _, _ in frames] == [0, 1, 2]
    assert all(list(o) == [1, 2, 3] and m.shape[0] == 3 for _, o, m in frames)
