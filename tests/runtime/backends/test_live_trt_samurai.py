"""memory="samurai" on the TensorRT live path (issue 22), on CPU: the real ``TrtExecutor`` and ``StreamTracker``
over the fake CUDA runtime and fake engines (``fake_gpu``), against the host executor on the same numpy graphs
(whose candidates differ, so the choice and the memory admission matter). The policy code is the host's own
(``stream_policy``, ``policy_bank``); what the device path adds is the captured step, the downloads of the
candidates, the upload of the choice and the per-object moves out of the newest memory slot.
"""

from __future__ import annotations

import numpy as np
import pytest

from fake_gpu import FakeCudart, FakeGraphs, _array, fake_engines, trt_engines
from test_live_trt import _act, _frames

# test_live_trt's scenario, shorter: object count 1 -> 2 -> 3 -> 2 -> 1, corrections by clicks and by a mask
SCRIPT = {0: ("add", 1, [40, 35]), 20: ("add", 2, [100, 70]), 40: ("correct", 1, [45, 40]),
          60: ("add", 3, [20, 80]), 80: ("remove", 2, None), 100: ("mask", 3, None),
          115: ("correct", 3, [25, 75]), 120: ("remove", 1, None)}
FRAMES = 140


def _trackers(engine, cudart: FakeCudart, memory: str, memory_iou: float = 0.5):
    from sam2rt.runtime.backends.executor import HostExecutor
    from sam2rt.runtime.backends.trt_executor import TrtExecutor
    from sam2rt.runtime.memory_policy import SamuraiConfig
    from sam2rt.runtime.stream import StreamTracker

    cfg = {} if memory == "sam2" else {"samurai": SamuraiConfig.for_model("sam2.1_hiera_tiny", stable_frames=3,
                                                                               memory_iou=memory_iou)}
    graphs = FakeGraphs(engine.size)
    engines = trt_engines(fake_engines(cudart, graphs))
    bf16 = engines.pop("bf16_round")
    host = StreamTracker(engine=engine, executor=HostExecutor(graphs.runners(), engine.size), memory=memory, **cfg)
    device = StreamTracker(engine=engine, executor=TrtExecutor(engines, engine.size, 4096, bf16), memory=memory,
                           **cfg)
    return host, device


def test_samurai_on_the_device_path_equals_the_host_path(engine, fake_gpu: FakeCudart) -> None:
    """140 frames, objects added, corrected (clicks, mask) and removed: with memory="samurai" the device tracker
    equals the host tracker on every frame (logits, remembered frames per object); the step is still captured
    once per object count and replayed; the policy changes the results and remembers frames beyond the
    previous six (it is not the default in disguise)."""
    host, device = _trackers(engine, fake_gpu, "samurai")
    plain, _ = _trackers(engine, fake_gpu, "sam2")
    frames = _frames(FRAMES)
    for tracker in (host, device, plain):
        tracker.load_first_frame(frames[0])
        _act(tracker, 0, SCRIPT[0])
    differs, gaps = 0, 0
    for t in range(1, FRAMES):
        ids_a, a = host.track(frames[t])
        ids_b, b = device.track(frames[t])
        _, c = plain.track(frames[t])
        assert ids_a == ids_b
        np.testing.assert_array_equal(a, b, err_msg=f"frame {t}")
        assert host.bank.mem_of == device.bank.mem_of, f"frame {t}"
        assert [tr.valid for tr in host._policy.tracks] == [tr.valid for tr in device._policy.tracks]
        differs += not np.array_equal(a, c)
        for tr in host._policy.tracks:
            recent = [f for _, f in host.policy.recent_frames(t + 1, tr, 7)]
            gaps += recent != list(range(recent[0], t + 1))
        if t in SCRIPT:
            for tracker in (host, device, plain):
                _act(tracker, t, SCRIPT[t])
    graphs = device.executor.graphs
    assert 1 <= graphs.captures <= 5 and graphs.replays > 90, (graphs.captures, graphs.replays)
    assert differs > 60 and gaps > 30, (differs, gaps)


def test_samurai_memory_moves_are_single_columns(engine, fake_gpu: FakeCudart) -> None:
    """Two objects whose admissions differ: each object's remembered frames sit in its own ring slots (columns
    moved one by one out of the newest slot), each slot column holds the memory the encoder wrote for that
    object and frame, on the host and on the fake device alike."""
    host, device = _trackers(engine, fake_gpu, "samurai", memory_iou=0.75)  # admissions that differ
    frames = _frames(40)
    for tracker in (host, device):
        tracker.load_first_frame(frames[0])
        tracker.add_new_prompt(0, 1, points=[[40, 35]], labels=[1])
        tracker.add_new_prompt(0, 2, points=[[100, 70]], labels=[1])
    written: dict[tuple[int, int], np.ndarray] = {}  # (object, frame) -> the memory encoded for it
    split = 0
    for t in range(1, 40):
        host.track(frames[t])
        device.track(frames[t])
        device.executor.synchronize()
        mem = device._objs["memory"]
        host_mem, device_mem = host._objs["memory"].array, _array(mem.ptr, mem.shape, mem.dtype).copy()
        for b in range(2):  # this step encoded frame t-1 into the newest slot
            written[(b, t - 1)] = host_mem[host.bank.mem_new, b].copy()
        for b in range(2):
            for f, slot in host.bank.mem_of[b].items():
                where = f"frame {t}, object {b}, memory of frame {f} in slot {slot}"
                np.testing.assert_array_equal(host_mem[slot, b], written[(b, f)], err_msg=where)
                np.testing.assert_array_equal(device_mem[slot, b], host_mem[slot, b], err_msg=where)
        m0, m1 = host.bank.mem_of
        split += any(f in m1 and m0[f] != m1[f] for f in m0) or set(m0) != set(m1)
    assert split > 5, (split, [tr.valid for tr in host._policy.tracks], host.bank.mem_of)
