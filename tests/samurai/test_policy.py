"""The SAMURAI policy's parts on their own: boxes from low-res logits, the memory rule, slots, the device path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sam2rt.errors import Sam2rtError
from sam2rt.runtime.backends.cuda import Buf, HostAllocator
from sam2rt.runtime.memory_policy import SamuraiConfig, SamuraiMemory, SamuraiTrack, mask_box
from sam2rt.runtime.outputs import threshold_resize


@pytest.mark.parametrize("seed", range(6))
def test_mask_box_equals_the_box_of_the_full_size_mask(seed: int) -> None:
    """Boxes from the low-res logits equal the boxes of the S x S mask the reference thresholds."""
    rng = np.random.default_rng(seed)
    h4, size = (64, 256) if seed % 2 else (128, 512)
    plane = np.full((h4, h4), -3.0, np.float32)
    y0, x0 = rng.integers(0, h4 - 8, 2)
    plane[y0:y0 + rng.integers(1, 8), x0:x0 + rng.integers(1, 8)] = rng.uniform(-0.5, 4.0)
    plane += rng.normal(0, 0.3, plane.shape).astype(np.float32) * (seed % 3)
    full = threshold_resize(plane[None, None], (size, size))[0]
    rows, cols = np.flatnonzero(full.any(1)), np.flatnonzero(full.any(0))
    want = (0, 0, 0, 0) if rows.size == 0 else (cols[0], rows[0], cols[-1], rows[-1])
    assert mask_box(plane, size) == tuple(int(v) for v in want)


def _reference_scan(frame_idx: int, passed: dict[int, bool], num_maskmem: int = 7, max_ptrs: int = 16) -> list:
    """The reference's scan as its code reads (frames back to 2, at most max_ptrs - 1 that pass, the previous
    frame always, the last num_maskmem - 1 at t_pos 1..): [(memory_tpos, frame)]."""
    valid: list[int] = []
    for i in range(frame_idx - 1, 1, -1):
        if passed[i]:
            valid.insert(0, i)
        if len(valid) >= max_ptrs - 1:
            break
    if frame_idx - 1 not in valid:
        valid.append(frame_idx - 1)
    out = []
    for t_pos in range(1, num_maskmem):
        idx = t_pos - num_maskmem
        if idx >= -len(valid):
            out.append((num_maskmem - t_pos - 1, valid[idx]))
    return out


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_recent_frames_follow_the_reference_scan(rate: float) -> None:
    rng = np.random.default_rng(int(rate * 10))
    policy = SamuraiMemory(SamuraiConfig(), 256, np.zeros(256, np.float32))
    track = SamuraiTrack(start=0)
    passed = {}
    for f in range(1, 120):
        assert sorted(policy.recent_frames(f, track, 7)) == sorted(_reference_scan(f, passed)), f
        passed[f] = bool(rng.random() < rate)
        policy.remember(track, f, 0.9 if passed[f] else 0.1, 1.0, None)


def test_remembered_frames_need_every_threshold() -> None:
    policy = SamuraiMemory(SamuraiConfig(memory_iou=0.5, memory_obj_score=0.0, memory_kf_score=0.2), 256,
                           np.zeros(256, np.float32))
    assert policy.passes(0.6, 0.1, None) and policy.passes(0.6, 0.1, 0.3)
    assert not policy.passes(0.5, 0.1, None) and not policy.passes(0.6, 0.0, None)
    assert not policy.passes(0.6, 0.1, 0.2) and not policy.passes(None, 0.1, None)


def test_config_defaults_and_errors() -> None:
    assert SamuraiConfig.for_model("sam2.1_hiera_tiny").kf_weight == 0.25
    assert SamuraiConfig.for_model("sam2.1_hiera_large").kf_weight == 0.15
    assert SamuraiConfig.for_model("sam2.1_hiera_small", kf_weight=None).stable_frames == 15
    with pytest.raises(Sam2rtError, match="unknown SAMURAI parameter"):
        SamuraiConfig.for_model("sam2.1_hiera_tiny", kf=0.3)
    with pytest.raises(Sam2rtError, match="kf_weight"):
        SamuraiConfig.for_model("sam2.1_hiera_tiny", kf_weight=2.0)


def test_policy_bank_keeps_every_frame_still_read() -> None:
    """Random admission over 200 frames, 3 objects: the slots (simulated: which frame each object's column of each
    memory slot holds, moved as ``memory_moves`` says, the newest slot written every frame) hold every frame the
    policy reads, each in its own slot, with the policy's temporal positions."""
    from sam2rt import contract as C
    from sam2rt.runtime.bank import SelectionRules
    from sam2rt.runtime.policy_bank import PolicyBank

    rng = np.random.default_rng(0)
    policy = SamuraiMemory(SamuraiConfig(), 256, np.zeros(256, np.float32))
    tracks = [SamuraiTrack(start=0) for _ in range(3)]
    bank = PolicyBank(C.BankConfig(cond_slots=2),
                      SelectionRules(), lambda b, f: policy.recent_frames(f, tracks[b], 7))
    for _ in tracks:
        bank.add_object()
    held = np.full((bank.bank.memory_slots, 3), -1)  # frame in each object's column of each slot
    for b in range(3):
        bank.add_cond(b, 0)
    bank.commit(0, (0, 1, 2))
    admitted = 0
    for t in range(1, 200):
        for b, track in enumerate(tracks):
            policy.remember(track, t, float(rng.random()), 1.0, None)
        moved = bank.commit(t)
        for slot, b in bank.memory_moves(moved):
            assert b is not None and slot < bank.mem_new, "a single column into an older ring slot"
            held[slot, b] = held[bank.mem_new, b]
        held[bank.mem_new] = t  # the memory encoder writes frame t into the newest slot
        out = {"memory_valid": np.zeros((bank.bank.memory_slots, 3), bool),
               "memory_tpos": np.zeros((bank.bank.memory_slots, 3), np.int64),
               "obj_ptr_valid": np.zeros((bank.bank.ptr_slots, 3), bool),
               "obj_ptr_tpos": np.zeros((bank.bank.ptr_slots, 3), np.float32)}
        bank.prepare(t + 1, out)
        for b, track in enumerate(tracks):
            recent = policy.recent_frames(t + 1, track, 7)
            admitted += len(recent)
            slots = [bank.mem_of[b][f] for _, f in recent]
            assert len(set(slots)) == len(slots)
            assert [held[s, b] for s in slots] == [f for _, f in recent], (t, b)
            assert [out["memory_tpos"][s, b] for s in slots] == [p for p, _ in recent]
            ring = out["memory_valid"][:bank.mem_ring, b]
            assert sorted(np.flatnonzero(ring).tolist()) == sorted(slots)
    assert admitted > 199 * 3 * 3  # older frames are read, not only the previous one


class SplitAllocator(HostAllocator):
    """A fake device: memory and host mirrors are separate arrays, so a missing upload or download shows."""

    device = True

    def alloc(self, shape, dtype, mirrored=False) -> Buf:
        array = np.full(shape, 7, np.dtype(dtype))  # device memory is not zeroed by the host
        mirror = np.zeros(shape, np.dtype(dtype)) if mirrored else None
        return Buf(array.ctypes.data, tuple(shape), array.dtype, array, mirror)

    def upload(self, buf: Buf, stream=None) -> None:
        np.copyto(buf.array, buf.mirror)

    def download(self, buf: Buf, stream=None) -> None:
        np.copyto(buf.mirror, buf.array)


def test_device_path_runs_the_same_policy(exported_tiny_256: Path) -> None:
    """memory="samurai" on an executor with device-style buffers (TensorRT's path, faked) equals the host
    path, with prompts: two objects, a correction, a removal."""
    from sam2rt.runtime.backends.executor import HostExecutor
    from sam2rt.runtime.engine import Engine
    from sam2rt.runtime.stream import StreamTracker

    engine = Engine(exported_tiny_256)
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (96, 128, 3), dtype=np.uint8) for _ in range(8)]
    cfg = SamuraiConfig.for_model("sam2.1_hiera_tiny", stable_frames=2, memory_iou=0.0, min_obj_score=-1e9)
    runs = []
    for split in (False, True):
        ex = HostExecutor(engine.runners, engine.size)
        if split:
            ex.allocator = SplitAllocator()
        tr = StreamTracker(engine=engine, executor=ex, memory="samurai", samurai=cfg)
        tr.load_first_frame(frames[0])
        tr.add_new_prompt(0, 1, points=[[40, 50]], labels=[1])
        out = []
        for i, f in enumerate(frames[1:], 1):
            out.append(tr.track(f)[1])
            if i == 2:
                out.append(tr.add_new_prompt(i, 2, points=[[90, 30]], labels=[1])[2])
            if i == 4:
                out.append(tr.add_new_prompt(i, 1, points=[[45, 55]], labels=[1])[2])
            if i == 6:
                tr.remove_object(1)
        runs.append((out, [t.kf is not None for t in tr._policy.tracks]))
    for a, b in zip(runs[0][0], runs[1][0]):
        np.testing.assert_array_equal(a, b)
    assert runs[0][1] == [True]


def test_cli_memory_flags(exported_tiny_256: Path) -> None:
    """--memory/--samurai-* map onto SamuraiConfig (model defaults otherwise); misuse says what to do."""
    import argparse

    from sam2rt.cli.memory_args import add_memory_args, memory_options

    p = argparse.ArgumentParser()
    add_memory_args(p)
    assert memory_options(p.parse_args([]), exported_tiny_256) == {"memory": "sam2"}
    opts = memory_options(p.parse_args(["--memory", "samurai", "--samurai-kf-weight", "0.4"]), exported_tiny_256)
    assert opts["samurai"] == SamuraiConfig(kf_weight=0.4)
    with pytest.raises(Sam2rtError, match="--memory samurai"):
        memory_options(p.parse_args(["--samurai-stable-frames", "3"]), exported_tiny_256)


def test_bad_memory_and_reverse_are_refused(exported_tiny_256: Path) -> None:
    from sam2rt.runtime.predictor import VideoPredictor

    with pytest.raises(Sam2rtError, match="memory must be one of"):
        VideoPredictor(exported_tiny_256, memory="samurai2")
    with pytest.raises(Sam2rtError, match="apply to memory='samurai'"):
        VideoPredictor(exported_tiny_256, samurai=SamuraiConfig())
    vp = VideoPredictor(exported_tiny_256, memory="samurai", progress=False)
    rng = np.random.default_rng(0)
    state = vp.init_state([rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(3)])
    vp.add_new_points_or_box(state, 2, 1, points=[[10, 10]], labels=[1])
    with pytest.raises(Sam2rtError, match="forward only"):
        next(vp.propagate_in_video(state, reverse=True))
    assert state["temp_output_dict_per_obj"][0].cond  # refused before anything moved


def test_failed_prompt_restores_the_filter(exported_tiny_256: Path, tmp_path: Path, monkeypatch) -> None:
    """A prompt that fails after SAMURAI's choice advanced an object's filter leaves the filter as it was (the
    predictor's rollback covers the policy state); a new object that fails is not left with a filter."""
    import pickle

    from PIL import Image

    from sam2rt.runtime.predictor import VideoPredictor

    rng = np.random.default_rng(0)
    for i in range(4):
        arr = rng.integers(0, 60, (48, 64, 3), dtype=np.uint8)
        arr[10 + i:30 + i, 20:40] = 230
        Image.fromarray(arr).save(tmp_path / f"{i:05d}.jpg", quality=95)
    vp = VideoPredictor(exported_tiny_256, progress=False, memory="samurai",
                        samurai=SamuraiConfig.for_model("sam2.1_hiera_tiny", stable_frames=1))
    state = vp.init_state(str(tmp_path))
    vp.add_new_points_or_box(state, 0, 1, points=[[30, 20]], labels=[1])
    for _ in vp.propagate_in_video(state, max_frame_num_to_track=2):
        pass
    before = pickle.dumps(state["memory_track_per_obj"])
    real = vp.policy.choose_all

    def choose_then_fail(*args, **kwargs):
        real(*args, **kwargs)  # the filters move
        raise RuntimeError("the backend failed after the choice")

    monkeypatch.setattr(vp.policy, "choose_all", choose_then_fail)
    for call in (lambda: vp.add_new_points_or_box(state, 2, 1, points=[[35, 25]], labels=[1]),  # multimask
                 lambda: vp.add_new_points_or_box(state, 1, 7, points=[[30, 20]], labels=[1])):
        with pytest.raises(RuntimeError, match="after the choice"):
            call()
        assert pickle.dumps(state["memory_track_per_obj"]) == before
    assert state["obj_ids"] == [1]
