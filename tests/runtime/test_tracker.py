"""The one StreamTracker against the official predictor run incrementally, at 512 px on a shared clip.

Events: two objects on frame 0 (clicks, box), a new object on frame 3 (click), a new object from a mask on
frame 6, a correction click on tracked object 1 on frame 9, object 2 removed on frame 12; 16 frames, so the
official object-pointer window (min(num_frames, 16)) is full as a stream's is. The object-score head is the
forced one of ``forced_model`` (presence flips from frame to frame), so gating is exercised.
Reference: the official SAM2VideoPredictor, propagated up to each event frame, prompted there, propagated
on from the next frame (what a live stream that moved on means; docs/tracker.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

FRAMES = 16  # official pointer window min(num_frames, 16) = 16, as a stream's


def _schedule(h: int, w: int) -> dict[int, list[tuple]]:
    mask = np.zeros((h, w), bool)
    mask[150:350, 500:800] = True
    return {0: [("points", 1, {"points": [[420, 260], [640, 300]], "labels": [1, 0]}),
                ("points", 2, {"box": [120, 100, 330, 420]})],
            3: [("points", 3, {"points": [[300, 300]], "labels": [1]})],
            6: [("mask", 4, mask)],
            9: [("points", 1, {"points": [[500, 200]], "labels": [1], "clear_old_points": False})],
            12: [("remove", 2, None)]}


def offline(predictor, video: str, schedule: dict, n: int) -> dict[int, np.ndarray]:
    """The official API run as a stream: propagate to each event frame, apply the events, go on from the next."""
    from sam2rt.benchmarks.parity import to_numpy

    out, state, start = {}, predictor.init_state(video), 0
    for t in sorted(schedule):
        if t > start:
            for f, _, m in predictor.propagate_in_video(state, start_frame_idx=start, max_frame_num_to_track=t - start):
                out[f] = to_numpy(m)
        for kind, obj_id, arg in schedule[t]:
            if kind == "points":
                out[t] = to_numpy(predictor.add_new_points_or_box(state, t, obj_id, **arg)[2])
            elif kind == "mask":
                out[t] = to_numpy(predictor.add_new_mask(state, t, obj_id, arg)[2])
            else:
                predictor.remove_object(state, obj_id)
        start = t + 1
    for f, _, m in predictor.propagate_in_video(state, start_frame_idx=start, max_frame_num_to_track=n - 1 - start):
        out[f] = to_numpy(m)
    return out


def live(tracker, frames: list[np.ndarray], schedule: dict) -> dict[int, np.ndarray]:
    out: dict[int, np.ndarray] = {}
    tracker.load_first_frame(frames[0])
    for t, frame in enumerate(frames):
        if t > 0:
            out[t] = tracker.track(frame)[1]
        for kind, obj_id, arg in schedule.get(t, []):
            if kind == "points":
                arg = {("bbox" if k == "box" else k): v for k, v in arg.items()}
                out[t] = tracker.add_new_prompt(t, obj_id, **arg)[2]
            elif kind == "mask":
                out[t] = tracker.add_new_prompt(t, obj_id, mask=arg)[2]
            else:
                tracker.remove_object(obj_id)
    return out


def ious(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> np.ndarray:
    assert sorted(a) == sorted(b) == list(range(FRAMES))
    values = []
    for f in range(FRAMES):
        assert a[f].shape == b[f].shape, f"frame {f}: {a[f].shape} vs {b[f].shape}"
        x, y = a[f] > 0, b[f] > 0
        inter, union = (x & y).sum(axis=(1, 2, 3)), (x | y).sum(axis=(1, 2, 3))
        values.extend(np.where(union == 0, 1.0, inter / np.maximum(union, 1)).tolist())
    return np.array(values)


@pytest.fixture(scope="module")
def clip(shared_data: Path, tmp_path_factory) -> tuple[str, list[np.ndarray]]:
    from PIL import Image

    out = tmp_path_factory.mktemp("bedroom20")
    for i in range(FRAMES):
        shutil.copy(shared_data / "videos" / "bedroom_frames" / f"{i:05d}.jpg", out)
    return str(out), [np.array(Image.open(out / f"{i:05d}.jpg").convert("RGB")) for i in range(FRAMES)]


def test_stream_matches_official_incremental(forced_model, clip) -> None:
    torch = pytest.importorskip("torch")
    from sam2rt.benchmarks.parity import official_predictor
    from sam2rt.manifest import load_manifest
    from sam2rt.runtime.stream import StreamTracker

    model_dir, ckpt = forced_model
    video, frames = clip
    schedule = _schedule(*frames[0].shape[:2])
    reference = official_predictor(load_manifest(model_dir), ckpt, None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            theirs = offline(reference, video, schedule, FRAMES)
    finally:
        torch.set_num_threads(threads)
    tracker = StreamTracker(model_dir, threads=1, fill_hole_area=reference.fill_hole_area)
    ours = live(tracker, frames, schedule)
    present = [float((ours[f] > 0).mean()) for f in range(FRAMES)]
    assert max(present) > 0.01 and min(present) < max(present)  # masks exist and change: not a trivial match
    vs_official = ious(ours, theirs)
    print(f"\nStreamTracker vs official (incremental), {len(vs_official)} frame-object masks over {FRAMES} frames: "
          f"mean IoU {vs_official.mean():.6f}, min IoU {vs_official.min():.6f}")
    assert vs_official.mean() >= 0.999 and vs_official.min() >= 0.99
    assert [o.shape[0] for o in (ours[2], ours[3], ours[6], ours[12], ours[13])] == [2, 3, 4, 4, 3]


@pytest.fixture(scope="module")
def small_tracker(exported_tiny_256: Path):
    from sam2rt.runtime.stream import StreamTracker

    return StreamTracker(exported_tiny_256, threads=1, fill_hole_area=0)


def test_resident_bank_equals_host_bank(exported_tiny_256, small_tracker, clip) -> None:
    """The tracker's one code path (executor buffers, slot rings, in-place writes; what runs on TensorRT) with
    the host allocator against the host bank of VideoPredictor (packed numpy bank, per-frame selection), the
    same events at 256 px."""
    from sam2rt.runtime.predictor import VideoPredictor

    _, frames = clip
    schedule = _schedule(*frames[0].shape[:2])
    ours = live(small_tracker, frames, schedule)
    host = offline(VideoPredictor(exported_tiny_256, threads=1, fill_hole_area=0, progress=False), frames,
                   schedule, FRAMES)
    vs_host = ious(ours, host)
    diff = max(float(np.abs(ours[f] - host[f]).max()) for f in range(FRAMES))
    print(f"\nresident bank vs host bank: {len(vs_host)} masks, min IoU {vs_host.min():.6f}, max |logit diff| {diff:.2e}")
    assert vs_host.min() >= 0.999 and diff < 1e-3
    assert max(float((ours[f] > 0).mean()) for f in range(FRAMES)) > 0.01


def test_result_outputs_match_the_logits(small_tracker, clip) -> None:
    """track(output="result"): masks equal logits > 0 at video size and at another size, boxes, presence."""
    from sam2rt.runtime.imageops import resize_bilinear

    _, frames = clip
    tr = small_tracker
    tr.load_first_frame(frames[0])
    tr.add_new_prompt(0, 1, points=[[420, 260]], labels=[1])
    tr.add_new_prompt(0, 2, bbox=[120, 100, 330, 420])
    res = tr.track(frames[1], output="result", mask_dtype=np.uint8)
    logits = tr.engine.to_video_res(res.low_res_logits, *frames[0].shape[:2])
    agree = (res.masks.astype(bool) == (logits[:, 0] > 0)).mean()
    assert res.masks.dtype == np.uint8 and res.masks.shape == (2, *frames[0].shape[:2]) and agree > 0.9999
    assert res.obj_ids == [1, 2] and res.frame_idx == 1 and res.scores.shape == (2,)
    np.testing.assert_array_equal(res.present, res.scores > 0)
    for k in range(2):
        ys, xs = np.nonzero(res.masks[k])
        expected = [xs.min(), ys.min(), xs.max(), ys.max()] if ys.size else [-1] * 4
        assert res.boxes[k].tolist() == expected
    small = tr.track(frames[2], output="result", mask_size=(120, 200))
    ref = resize_bilinear(small.low_res_logits, (120, 200))[:, 0] > 0
    assert small.masks.dtype == np.bool_ and (small.masks == ref).mean() > 0.9999


def test_result_output_hands_the_step_logits_to_the_executor_masks_hook(small_tracker, clip, monkeypatch) -> None:
    """A device executor's ``masks`` hook (TensorRT: the postprocessing engine) gets the step's low_res_masks
    buffer when it holds the results (no hole filled), and no buffer once hole filling changed them (the
    filled logits are then uploaded), so the device masks equal the host path's either way."""
    from sam2rt.runtime.outputs import threshold_resize

    _, frames = clip
    tr, calls = small_tracker, []

    def hook(low, size, dtype, device=None):
        calls.append(device)
        return threshold_resize(low, size, dtype)

    monkeypatch.setattr(tr.executor, "masks", hook, raising=False)
    tr.load_first_frame(frames[0])
    tr.add_new_prompt(0, 1, points=[[420, 260]], labels=[1])
    res = tr.track(frames[1], output="result")
    assert calls[-1] is not None and calls[-1].ptr == tr._objs["low_res_masks"].ptr
    np.testing.assert_array_equal(res.masks, threshold_resize(res.low_res_logits, frames[0].shape[:2]))
    monkeypatch.setattr(tr, "fill_hole_area", 10**6)  # every background component is a hole: all filled
    res = tr.track(frames[2], output="result", mask_size=(50, 60))
    assert calls[-1] is None and res.masks.shape == (1, 50, 60) and res.masks.all()


def test_fill_holes_near_equals_fill_holes() -> None:
    """The bounding-box hole filling equals imageops.fill_holes on random planes and planted holes."""
    from sam2rt.runtime.imageops import fill_holes
    from sam2rt.runtime.outputs import fill_holes_near

    rng = np.random.default_rng(1)
    for trial in range(200):
        h, w = int(rng.integers(12, 40)), int(rng.integers(12, 40))
        x = rng.standard_normal((2, 1, h, w)).astype(np.float32)
        if trial % 3 == 0:  # one object with a 1-pixel hole, possibly at the border
            x[:] = -1
            y0, x0 = rng.integers(0, h - 5), rng.integers(0, w - 5)
            x[:, :, y0:y0 + 8, x0:x0 + 9] = 1
            x[:, :, y0 + 2, x0 + 3] = -1
        if trial % 5 == 0:
            x[1] = -5  # an empty mask
        for area in (1, 3, 8, 20):
            np.testing.assert_array_equal(fill_holes_near(x, area), fill_holes(x, area))
