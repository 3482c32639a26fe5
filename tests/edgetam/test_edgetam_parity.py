"""EdgeTAM end to end: the live StreamTracker against the official EdgeTAM video predictor, on two real clips.

The official EdgeTAM predictor is the SAM 2 predictor of before SAM 2.1's per-object tracking: it tracks all
objects of a state jointly (no new object once tracking has started, one prompted frame conditions every
object) and its perceiver runs only one object at a time (upstream EdgeTAM#15). sam2rt tracks each object
independently, as SAM 2.1 does, so the reference runs one official inference state per object, incrementally
as a stream sees it: from the object's first prompt, propagate up to each later prompt, prompt, go on. An
object removed mid-stream simply stops being compared. Seeded random weights with a forced object-score head
exercise object presence and absence (see conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FRAMES = 40
# clip -> {obj_id: {frame: prompt}}; object 2 is removed on REMOVE_AT (after that frame is tracked)
SCENARIOS = {
    "bedroom": {
        1: {0: {"points": [[300, 300], [420, 250]], "labels": [1, 0]},
            22: {"points": [[330, 200]], "labels": [0], "clear_old_points": False}},  # refinement
        2: {0: {"box": [550, 150, 800, 450]}},
        3: {9: {"points": [[150, 400]], "labels": [1]}},  # added mid-stream
    },
    "cups": {
        1: {0: {"points": [[640, 360]], "labels": [1]},
            25: {"points": [[700, 330]], "labels": [1], "clear_old_points": False}},
        2: {0: {"box": [200, 250, 500, 600]}},
        3: {12: {"points": [[1000, 400], [950, 500]], "labels": [1, 1]}},
    },
}
REMOVE_AT = 30


def _jpeg_clip(shared_data: Path, clip: str, out: Path) -> Path:
    """The clip's first FRAMES frames as a JPEG folder (the official predictor's input)."""
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    if clip == "bedroom":
        src = shared_data / "videos" / "bedroom_frames"
        for i in range(FRAMES):
            (out / f"{i:05d}.jpg").write_bytes((src / f"{i:05d}.jpg").read_bytes())
        return out
    cap = cv2.VideoCapture(str(shared_data / "videos" / f"{clip}.mp4"))
    for i in range(FRAMES):
        ok, bgr = cap.read()
        assert ok, f"{clip}.mp4 has fewer than {FRAMES} frames"
        cv2.imwrite(str(out / f"{i:05d}.jpg"), bgr)
    cap.release()
    return out


@pytest.fixture(scope="module")
def official(edgetam_forced):
    """The official EdgeTAM SAM2VideoPredictor with the forced checkpoint, runnable on CPU."""
    import torch

    from sam2rt.export.checkpoints import build_model

    model, _ = build_model("edgetam", 256, checkpoint=edgetam_forced[1])

    def upcast_bf16(module, args, kwargs):  # the bank is stored as bfloat16; CPU attention needs float32
        return args, {k: v.float() if torch.is_tensor(v) and v.dtype == torch.bfloat16 else v
                      for k, v in kwargs.items()}

    model.memory_attention.register_forward_pre_hook(upcast_bf16, with_kwargs=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steadier than spinning OpenMP threads on a busy 2-core machine
    yield model
    torch.set_num_threads(threads)


def official_object(predictor, jpeg_dir: Path, prompts: dict[int, dict], last: int) -> dict[int, np.ndarray]:
    """One object through the official predictor as a stream sees it: {frame: logits (1, H, W)}."""
    import torch

    out: dict[int, np.ndarray] = {}
    with torch.inference_mode():
        state = predictor.init_state(str(jpeg_dir))
        frames = sorted(prompts)
        for i, t in enumerate(frames):
            if i > 0 and t > start:
                for f, _, masks in predictor.propagate_in_video(state, start_frame_idx=start,
                                                                max_frame_num_to_track=t - start):
                    out[f] = masks[0].numpy()
            _, _, masks = predictor.add_new_points_or_box(state, t, 1, **prompts[t])
            out[t] = masks[0].numpy()
            start = t + 1
        for f, _, masks in predictor.propagate_in_video(state, start_frame_idx=start,
                                                        max_frame_num_to_track=last - start):
            out[f] = masks[0].numpy()
    return out


def stream_run(tracker, frames: list[np.ndarray], scenario: dict[int, dict[int, dict]]) -> dict[int, dict[int, np.ndarray]]:
    """The live tracker over ``frames`` with the scenario's prompts: {frame: {obj_id: logits (1, H, W)}}."""
    out: dict[int, dict[int, np.ndarray]] = {}
    tracker.load_first_frame(frames[0])
    for t, frame in enumerate(frames):
        if t > 0:
            ids, logits = tracker.track(frame)
            out[t] = dict(zip(ids, logits))
        for obj_id, prompts in scenario.items():
            if t in prompts:
                prompt = {("bbox" if k == "box" else k): v for k, v in prompts[t].items()}
                _, ids, logits = tracker.add_new_prompt(t, obj_id, **prompt)
                out[t] = dict(zip(ids, logits))
        if t == REMOVE_AT:
            tracker.remove_object(2)
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter, union = np.logical_and(a > 0, b > 0).sum(), np.logical_or(a > 0, b > 0).sum()
    return 1.0 if union == 0 else float(inter / union)


@pytest.mark.parametrize("clip", sorted(SCENARIOS))
def test_stream_matches_official_edgetam(clip, official, edgetam_forced, shared_data, tmp_path):
    from PIL import Image

    from sam2rt.runtime.stream import StreamTracker

    scenario = SCENARIOS[clip]
    jpeg_dir = _jpeg_clip(shared_data, clip, tmp_path / clip)
    frames = [np.array(Image.open(jpeg_dir / f"{i:05d}.jpg").convert("RGB")) for i in range(FRAMES)]
    tracker = StreamTracker(edgetam_forced[0], threads=1)
    ours = stream_run(tracker, frames, scenario)
    assert tracker.obj_ids == [1, 3]

    worst, compared, present, absent, disagree = 1.0, 0, 0, 0, 0
    for obj_id, prompts in scenario.items():
        last = REMOVE_AT if obj_id == 2 else FRAMES - 1
        theirs = official_object(official, jpeg_dir, prompts, last)
        assert sorted(theirs) == list(range(min(prompts), last + 1))
        for f, ref in theirs.items():
            mine = ours[f][obj_id]
            assert mine.shape == ref.shape
            found_mine, found_ref = bool((mine > 0).any()), bool((ref > 0).any())
            disagree += found_mine != found_ref
            present += found_ref
            absent += not found_ref
            worst = min(worst, _iou(mine, ref))
            compared += 1
        if obj_id == 2:
            assert all(2 not in ours[f] for f in range(REMOVE_AT + 1, FRAMES))
    print(f"\n{clip}: {compared} object-frames, official present/absent {present}/{absent}, "
          f"presence disagreements {disagree}, min IoU {worst:.6f}")
    assert compared >= 2 * FRAMES
    assert present > 0 and absent > 0, "the forced score head should give both present and absent frames"
    assert disagree == 0
    assert worst >= 0.999
