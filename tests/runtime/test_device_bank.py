"""The device-resident path on CPU: buffer planning, slot rings, and parity with the host path.

``DeviceTracker`` with the ``HostExecutor`` runs exactly the code a GPU runs (plan, slot bookkeeping, in-place
memory/pointer writes), with numpy buffers and ONNX Runtime CPU runners.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sam2rt import contract as C
from sam2rt.errors import Sam2rtError
from sam2rt.runtime.bank import SelectionRules
from sam2rt.runtime.cuda import HostAllocator
from sam2rt.runtime.device_bank import DeviceBank, plan_bytes, plan_step


def test_plan_shapes_and_bytes_per_slot() -> None:
    bank = C.BankConfig()
    plan = plan_step(bank, 1024, batch=3)
    assert plan["memory"].shape == (10, 3, 4096, 64)
    assert plan["memory"].slot_bytes == 3 * 4096 * 64 * 4  # 3 MiB: one slot for 3 objects
    assert plan["obj_ptrs"].shape == (19, 3, 256) and plan["obj_ptrs"].slot_bytes == 3 * 256 * 4
    assert plan["low_res_masks"].shape == (3, 1, 256, 256)
    assert plan["point_coords"].shape == (3, 1, 2)
    assert "image_embed" not in plan and "mask_logits" not in plan and "obj_ptr" not in plan  # aliases / slots
    assert plan_bytes(plan) == sum(p.nbytes for p in plan.values())
    assert plan_bytes(plan_step(bank, 1024, 2)) < plan_bytes(plan)


def test_buffers_slots_are_contiguous_views() -> None:
    buf = HostAllocator().alloc((10, 2, 16, 64), np.float32)
    slot = buf.slot(3)
    assert slot.shape == (2, 16, 64) and slot.ptr == buf.ptr + 3 * 2 * 16 * 64 * 4
    assert slot.array.flags.c_contiguous and np.shares_memory(slot.array, buf.array)
    assert slot.slot(1).ptr == slot.ptr + 16 * 64 * 4
    assert buf.prefix(4).shape == (4, 2, 16, 64)


def _bank(batch: int = 1) -> DeviceBank:
    cfg = C.BankConfig()
    alloc = HostAllocator()
    plan = plan_step(cfg, 256, batch)
    return DeviceBank({n: alloc.alloc(p.shape, p.dtype, mirrored=True) for n, p in plan.items()}, cfg,
                      SelectionRules())


def test_ring_selection_after_twenty_frames() -> None:
    bank = _bank()
    bank.add_cond(0, 0)
    for t in range(1, 21):
        mem_slot, ptr_slot = bank.prepare(t)
        assert mem_slot == 4 + t % 6 and ptr_slot == 4 + t % 15
        bank.commit(t)
    bank.prepare(21)
    valid, tpos = bank.buffers["memory_valid"].mirror[:, 0], bank.buffers["memory_tpos"].mirror[:, 0]
    assert valid.sum() == 7 and valid[0] and tpos[0] == 6  # the conditioning frame + the 6 previous frames
    assert sorted(tpos[valid].tolist()) == [0, 1, 2, 3, 4, 5, 6]
    ptr_valid = bank.buffers["obj_ptr_valid"].mirror[:, 0]
    assert ptr_valid.sum() == 16  # the conditioning pointer + 15 previous frames
    np.testing.assert_allclose(bank.buffers["obj_ptr_tpos"].mirror[0, 0], 21 / 15)


def test_too_many_conditioning_frames_is_refused() -> None:
    bank = _bank()
    for t in range(4):
        bank.add_cond(0, t)
    with pytest.raises(Sam2rtError, match="cond-slots"):
        bank.add_cond(0, 9)


def _frames(n: int, size: int = 96) -> list[np.ndarray]:
    """A bright square moving over a dark gradient: (size, size, 3) uint8 RGB frames."""
    base = np.linspace(0, 90, size * size * 3).reshape(size, size, 3)
    frames = []
    for t in range(n):
        f = base.copy()
        f[20 + t:50 + t, 25 + 2 * t:55 + 2 * t] = (230, 200, 40)
        frames.append(f.astype(np.uint8))
    return frames


def test_device_tracker_matches_the_host_path(exported_tiny_256: Path) -> None:
    """Same prompts, same frames: the device bank's masks equal StreamTracker's (logits to float rounding:
    attention sees the whole bank with masked empty slots instead of the filled prefix)."""
    from sam2rt.runtime.device_step import DeviceTracker
    from sam2rt.runtime.stream import StreamTracker

    frames = _frames(10)
    host, device = StreamTracker(exported_tiny_256, threads=1), DeviceTracker(exported_tiny_256, threads=1)
    for tracker in (host, device):
        tracker.load_first_frame(frames[0])
        tracker.add_new_prompt(0, 1, points=[[40, 35]], labels=[1])
        tracker.add_new_prompt(0, 2, bbox=[5, 60, 40, 90])
    for frame in frames[1:]:
        ids_h, logits_h = host.track(frame)
        ids_d, logits_d = device.track(frame)
        assert ids_h == ids_d == [1, 2]
        np.testing.assert_array_equal(logits_h > 0, logits_d > 0)
        np.testing.assert_allclose(logits_d, logits_h, atol=1e-4)
    with pytest.raises(Sam2rtError, match="first frame only"):
        device.add_new_prompt(0, 3, points=[[10, 10]], labels=[1])
