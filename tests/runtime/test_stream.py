"""StreamTracker: equal to the official SAM2VideoPredictor propagating forward, bounded memory, clean errors.

The official predictor runs on CPU with the same seeded random weights as the exported model
(sam2.1_hiera_tiny @256, seed 0). Holes are not filled on either side (the official CPU build cannot).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from sam2rt.errors import Sam2rtError

FRAMES = 20  # more than max_obj_ptrs (16): the object-pointer window is full, as in a live stream
P1 = {"points": [[300, 300], [420, 250]], "labels": [1, 0]}  # object 1: a positive and a negative click
BOX2 = [550, 150, 800, 450]  # object 2: a box
P3 = {"points": [[150, 400]], "labels": [1]}  # object 3, added mid-stream
FIX1 = {"points": [[330, 200]], "labels": [0]}  # a correction click on object 1


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared test data not found at {path}")
    return path


@pytest.fixture(scope="module")
def jpeg_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first FRAMES frames of bedroom as a JPEG folder (the official predictor's input)."""
    src = shared_data / "videos" / "bedroom_frames"
    out = tmp_path_factory.mktemp("bedroom20")
    for i in range(FRAMES):
        shutil.copy(src / f"{i:05d}.jpg", out / f"{i:05d}.jpg")
    return out


@pytest.fixture(scope="module")
def frames(jpeg_dir: Path) -> list[np.ndarray]:
    """(H, W, 3) uint8 RGB frames decoded with Pillow, as the official loader does."""
    from PIL import Image

    return [np.array(Image.open(jpeg_dir / f"{i:05d}.jpg").convert("RGB")) for i in range(FRAMES)]


@pytest.fixture(scope="module")
def tracker(exported_tiny_256: Path):
    from sam2rt.runtime.stream import StreamTracker

    return StreamTracker(exported_tiny_256, threads=1, fill_hole_area=0)  # robust on a busy 2-core machine


@pytest.fixture(scope="module")
def official():
    """The official SAM2VideoPredictor with the exported model's weights, runnable on CPU."""
    torch = pytest.importorskip("torch")
    from sam2rt.export.checkpoints import build_model

    model, _ = build_model("sam2.1_hiera_tiny", 256, random_seed=0)
    model.fill_hole_area = 0

    def upcast_bf16(module, args, kwargs):  # the bank is stored as bfloat16; CPU attention needs float32
        return args, {k: v.float() if torch.is_tensor(v) and v.dtype == torch.bfloat16 else v
                      for k, v in kwargs.items()}

    model.memory_attention.register_forward_pre_hook(upcast_bf16, with_kwargs=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # OpenMP threads spin-wait on a busy machine: 1 thread is steadier
    yield model
    torch.set_num_threads(threads)


def offline_run(predictor, jpeg_dir: Path, schedule: dict[int, list[tuple[int, dict]]],
                n: int) -> dict[int, np.ndarray]:
    """The offline equivalent of a stream, with the official API (the official predictor or ours): prompt
    at each frame of ``schedule`` after propagating up to it, then propagate from the next frame on, up to
    frame n - 1. Returns {frame: masks (K, 1, H, W) float32}."""
    out: dict[int, np.ndarray] = {}
    state = predictor.init_state(str(jpeg_dir))
    start = 0
    for t in sorted(schedule):
        if t > start:
            for f, _, masks in predictor.propagate_in_video(state, start_frame_idx=start,
                                                            max_frame_num_to_track=t - start):
                out[f] = np.asarray(masks)
        for obj_id, prompt in schedule[t]:
            _, _, masks = predictor.add_new_points_or_box(state, t, obj_id, **prompt)
        out[t] = np.asarray(masks)
        start = t + 1
    for f, _, masks in predictor.propagate_in_video(state, start_frame_idx=start,
                                                    max_frame_num_to_track=n - 1 - start):
        out[f] = np.asarray(masks)
    return out


def stream_run(tracker, frames, schedule: dict[int, list[tuple[int, dict]]]) -> dict[int, np.ndarray]:
    """Feed ``frames`` to the tracker, prompting at the frames of ``schedule``. Returns {frame: masks}."""
    out: dict[int, np.ndarray] = {}
    tracker.load_first_frame(frames[0])
    for t, frame in enumerate(frames):
        if t > 0:
            _, out[t] = tracker.track(frame)
        for obj_id, prompt in schedule.get(t, []):
            prompt = {("bbox" if k == "box" else k): v for k, v in prompt.items()}
            _, _, out[t] = tracker.add_new_prompt(t, obj_id, **prompt)
    return out


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-object IoU of (K, 1, H, W) logits thresholded at 0 (1 where both are empty)."""
    inter = ((a > 0) & (b > 0)).sum(axis=(1, 2, 3))
    union = ((a > 0) | (b > 0)).sum(axis=(1, 2, 3))
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def compare(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float]:
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    return float(iou(ours, theirs).min()), float(np.abs(ours - theirs).max())


def test_two_objects_on_frame_0_match_official(tracker, official, frames, jpeg_dir):
    import torch

    with torch.inference_mode():
        state = official.init_state(str(jpeg_dir))
        official.add_new_points_or_box(state, 0, 1, **P1)
        official.add_new_points_or_box(state, 0, 2, box=BOX2)
        theirs = {f: m.numpy() for f, ids, m in official.propagate_in_video(state)}
    ours = stream_run(tracker, frames, {0: [(1, P1), (2, {"box": BOX2})]})
    assert sorted(ours) == sorted(theirs) == list(range(FRAMES))
    results = [compare(ours[f], theirs[f]) for f in range(FRAMES)]
    min_iou, max_diff = min(r[0] for r in results), max(r[1] for r in results)
    print(f"\nstream vs official, 2 objects x {FRAMES} frames: min IoU {min_iou:.6f}, max |logit diff| {max_diff:.3g}")
    assert min_iou >= 0.999
    assert max_diff < 1e-3  # float32 rounding (the official result itself moves ~2e-5 with torch's thread count)
    assert tracker.obj_ids == [1, 2]


def test_object_added_and_refined_mid_stream_match_official(exported_tiny_256, tracker, official, frames,
                                                            jpeg_dir):
    """Object 3 appears on frame 4, object 1 gets a correction click on frame 17 (tracked from then on).

    The official equivalent of a stream is: propagate up to the frame, prompt there, propagate on. (Prompting
    object 3 on frame 4 before one propagation from frame 0 is not: the official predictor would then track
    it on frames 0-3 too, with frame 4's memory, and use those frames as memories later.) Our VideoPredictor
    run the same way gives the same logits (to float rounding): nothing the stream's rings dropped was needed.
    """
    from sam2rt.runtime.predictor import VideoPredictor

    n = 19  # the correction on frame 17 attends to the pointers of the 15 frames before it
    schedule = {0: [(1, P1)], 4: [(3, {"box": BOX2})], 17: [(1, {**FIX1, "clear_old_points": False})]}
    theirs = offline_run(official, jpeg_dir, schedule, n)
    ours = stream_run(tracker, frames[:n], schedule)
    assert sorted(ours) == sorted(theirs) == list(range(n))
    offline = offline_run(VideoPredictor(exported_tiny_256, threads=1, fill_hole_area=0, progress=False),
                          jpeg_dir, schedule, n)
    for f in range(n):  # the resident bank (full slots, masked) vs the packed host bank: float rounding only
        np.testing.assert_allclose(ours[f], offline[f], atol=1e-4, err_msg=f"frame {f}")
    worst_iou, worst_diff = 1.0, 0.0
    for f in range(n):
        assert ours[f].shape[0] == (1 if f < 4 else 2)
        min_iou, max_diff = compare(ours[f], theirs[f])
        worst_iou, worst_diff = min(worst_iou, min_iou), max(worst_diff, max_diff)
    print(f"\nmid-stream object + correction vs official: min IoU {worst_iou:.6f}, max |logit diff| {worst_diff:.3g}")
    assert worst_iou >= 0.999
    assert worst_diff < 1e-3
    assert tracker.obj_ids == [1, 3]


def test_memory_stays_bounded(tracker, frames, monkeypatch):
    """60 frames (4 frames looped), object 1 corrected every 4th frame as a conditioning frame, object 3 added
    and removed: the buffers are fixed sizes, so the bytes held return to the same value."""
    tracker.load_first_frame(frames[0])
    tracker.add_new_prompt(0, 1, **P1)
    tracker.add_new_prompt(0, 2, bbox=BOX2)
    monkeypatch.setitem(tracker.engine.tracking, "add_all_frames_to_correct_as_cond", True)  # cond frames pile up
    sizes = []
    for t in range(1, 60):
        tracker.track(frames[t % 4])
        if t % 4 == 0:
            tracker.add_new_prompt(t, 1, **FIX1)
        if t % 10 == 5:
            tracker.add_new_prompt(t, 3, **P3)
        if t % 10 == 8:
            tracker.remove_object(3)
        sizes.append(tracker.stored_bytes())
    print(f"\nbytes held at frames 12/32/52 (2 objects): {sizes[11]} {sizes[31]} {sizes[51]}; "
          f"15/35/55 (3 objects): {sizes[14]} {sizes[34]} {sizes[54]}")
    assert sizes[11] == sizes[31] == sizes[51] < sizes[14] == sizes[34] == sizes[54]
    assert max(sizes[20:]) == max(sizes[:20])
    assert sorted(tracker.bank.cond[0]) == [44, 48, 52, 56]  # the newest conditioning frames stay


def _snapshot(tracker) -> tuple:
    return (tracker.frame_idx, tracker.obj_ids, tracker.stored_bytes(), tracker._masks.copy().tobytes(),
            [dict(c) for c in tracker.bank.cond])


def test_bad_calls_raise_and_change_nothing(exported_tiny_256, tracker, frames):
    from sam2rt.runtime.stream import StreamTracker

    fresh = StreamTracker(exported_tiny_256, threads=1, fill_hole_area=0)
    with pytest.raises(Sam2rtError, match="load_first_frame"):
        fresh.add_new_prompt(0, 1, **P1)
    with pytest.raises(Sam2rtError, match="load_first_frame"):
        fresh.track(frames[0])
    with pytest.raises(Sam2rtError, match="uint8"):
        fresh.load_first_frame(frames[0].astype(np.float32))
    fresh.load_first_frame(frames[0])
    with pytest.raises(Sam2rtError, match="no object"):
        fresh.track(frames[1])
    assert fresh.frame_idx == 0

    def reference_then_replay(bad_calls) -> tuple[np.ndarray, np.ndarray]:
        tracker.load_first_frame(frames[0])
        tracker.add_new_prompt(0, 1, **P1)
        tracker.track(frames[1])
        tracker.track(frames[2])
        for call in bad_calls:
            before = _snapshot(tracker)
            with pytest.raises(Sam2rtError):
                call()
            assert _snapshot(tracker) == before, call
        return tracker.track(frames[3])[1]

    h, w = frames[0].shape[:2]
    bad = [
        lambda: tracker.track(frames[3][:, :, 0]),  # (H, W)
        lambda: tracker.track(frames[3].astype(np.float32)),
        lambda: tracker.track(frames[3][: h // 2]),  # another size
        lambda: tracker.add_new_prompt(1, 1, **P1),  # a past frame
        lambda: tracker.add_new_prompt(3, 1, **P1),  # a future frame
        lambda: tracker.add_new_prompt(2, 1, points=[[10, 10]], labels=[2]),
        lambda: tracker.add_new_prompt(2, 7, points=[[10, 10]], labels=[2]),  # would be a new object
        lambda: tracker.add_new_prompt(2, 7, points=[[w + 5, 10]], labels=[1]),  # outside the frame
        lambda: tracker.add_new_prompt(2, 7, bbox=[0, 0, w, h], mask=np.ones((h, w), bool)),
        lambda: tracker.remove_object(99),
        lambda: tracker.track(frames[3], output="result", mask_size=(0, 5)),
        lambda: tracker.track(frames[3], output="result", mask_dtype=np.float32),
        lambda: tracker.track(frames[3], output="result", masks=True),
        lambda: tracker.track(frames[3], mask_size=(10, 10)),
    ]
    expected = reference_then_replay([])
    got = reference_then_replay(bad)
    np.testing.assert_array_equal(got, expected)
    assert tracker.obj_ids == [1]


def test_mask_prompt_remove_reset_and_bgr(tracker, frames):
    h, w = frames[0].shape[:2]
    tracker.load_first_frame(frames[0])
    tracker.add_new_prompt(0, 1, **P1)
    tracker.track(frames[1])
    mask = np.zeros((h, w), bool)
    mask[100:300, 200:500] = True
    idx, ids, masks = tracker.add_new_prompt(1, 5, mask=mask)
    assert (idx, ids, masks.shape, masks.dtype) == (1, [1, 5], (2, 1, h, w), np.float32)
    ids, masks = tracker.track(frames[2])
    assert ids == [1, 5] and masks.shape == (2, 1, h, w)
    assert tracker.remove_object(1) == [5]
    ids, masks = tracker.track(frames[3])
    assert ids == [5] and masks.shape == (1, 1, h, w)
    tracker.reset()
    assert tracker.obj_ids == [] and tracker.frame_idx == 3
    assert tracker.add_new_prompt(3, 2, **P1)[1] == [2]

    rgb = stream_run(tracker, frames[:2], {0: [(1, P1)]})
    tracker.bgr = True
    try:
        bgr = stream_run(tracker, [f[:, :, ::-1] for f in frames[:2]], {0: [(1, P1)]})
    finally:
        tracker.bgr = False
    np.testing.assert_array_equal(bgr[1], rgb[1])
