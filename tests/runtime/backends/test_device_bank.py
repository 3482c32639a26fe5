"""The resident bank's bookkeeping and buffers on CPU: slot rings, conditioning slots, object columns."""

from __future__ import annotations

import numpy as np
import pytest

from sam2rt import contract as C
from sam2rt.runtime.bank import SelectionRules
from sam2rt.runtime.backends.cuda import HostAllocator
from sam2rt.runtime.backends.device_bank import DeviceBank, bind_prefix, valid_prefix
from sam2rt.runtime.backends.executor import OBJECT_TENSORS, BufferSet, planned_bytes, relayout


def _dims(batch: int, size: int = 256) -> dict[str, int]:
    bank = C.BankConfig()
    return {**C.resolve_dims(size), "M": bank.memory_slots, "P": bank.ptr_slots, "B": batch, "N": 1}


def test_buffers_slots_are_contiguous_views() -> None:
    buf = HostAllocator().alloc((10, 2, 16, 64), np.float32, mirrored=True)
    slot = buf.slot(3)
    assert slot.shape == (2, 16, 64) and slot.ptr == buf.ptr + 3 * 2 * 16 * 64 * 4
    assert slot.array.flags.c_contiguous and np.shares_memory(slot.array, buf.array)
    assert slot.slot(1).ptr == slot.ptr + 16 * 64 * 4 and slot.mirror is not None
    assert buf.prefix(4).shape == (4, 2, 16, 64)
    view = buf.view((3, 5))
    assert view.ptr == buf.ptr and view.array.shape == (3, 5) and np.shares_memory(view.array, buf.array)


def test_planned_bytes_and_relayout_moves_object_columns() -> None:
    alloc = HostAllocator()
    assert planned_bytes(OBJECT_TENSORS, _dims(3, 1024)) > planned_bytes(OBJECT_TENSORS, _dims(2, 1024))
    old = BufferSet(alloc, OBJECT_TENSORS, _dims(3))
    assert old.nbytes == planned_bytes(OBJECT_TENSORS, _dims(3))
    for name in ("memory", "obj_ptrs"):
        for b in range(3):
            old[name].array[:, b] = b + 1
    old["low_res_masks"].array[:] = np.arange(3)[:, None, None, None]
    old["binarize"].mirror[:] = [False, True, False]
    new = BufferSet(alloc, OBJECT_TENSORS, _dims(2))
    relayout(old, new, [(0, 0), (2, 1)])  # object 1 removed
    assert (new["memory"].array[:, 0] == 1).all() and (new["memory"].array[:, 1] == 3).all()
    assert (new["obj_ptrs"].array[:, 1] == 3).all()
    assert new["low_res_masks"].array[:, 0, 0, 0].tolist() == [0, 2]
    assert new["binarize"].mirror.tolist() == [False, False]


def _prepare(bank: DeviceBank, t: int) -> dict[str, np.ndarray]:
    B, cfg = bank.batch, bank.bank
    out = {"memory_valid": np.zeros((cfg.memory_slots, B), bool), "memory_tpos": np.zeros((cfg.memory_slots, B), np.int32),
           "obj_ptr_valid": np.zeros((cfg.ptr_slots, B), bool), "obj_ptr_tpos": np.zeros((cfg.ptr_slots, B), np.float32)}
    bank.prepare(t, out)
    return out


def test_ring_selection_after_twenty_frames() -> None:
    bank = DeviceBank(C.BankConfig(), SelectionRules())
    b = bank.add_object()
    bank.add_cond(b, 0)
    bank.commit(0, (b,))
    for t in range(1, 21):
        moved = bank.commit(t)  # rings first: frame t goes to the newest (last) ring slots, t-1 to its ring slot
        assert bank.mem_slot(t) == bank.mem_new == 5 and bank.ptr_slot(t) == bank.ptr_new == 14
        assert moved == ((t - 1) % 5, (t - 1) % 14) == (bank.mem_slot(t - 1), bank.ptr_slot(t - 1))
    assert bank.cond_slot(b, 0) == (6, 15)  # conditioning slots after the rings
    out = _prepare(bank, 21)
    valid, tpos = out["memory_valid"][:, 0], out["memory_tpos"][:, 0]
    assert valid.sum() == 7 and valid[6] and tpos[6] == 6  # the conditioning frame + the 6 previous frames
    assert sorted(tpos[valid].tolist()) == [0, 1, 2, 3, 4, 5, 6]
    assert out["obj_ptr_valid"][:, 0].sum() == 16  # the conditioning pointer + 15 previous frames
    np.testing.assert_allclose(out["obj_ptr_tpos"][15, 0], 21 / 15)
    # every valid slot is inside the bound prefix, which is just the valid slots in steady state
    assert valid_prefix(out["memory_valid"], out["obj_ptr_valid"]) == (7, 16)


def test_new_object_sees_only_its_own_frames() -> None:
    bank = DeviceBank(C.BankConfig(), SelectionRules())
    a = bank.add_object()
    bank.add_cond(a, 0)
    bank.commit(0, (a,))
    for t in range(1, 5):
        bank.commit(t)
    b = bank.add_object()  # prompted on frame 5
    bank.add_cond(b, 5)
    bank.commit(5, (b,))
    out = _prepare(bank, 6)
    assert out["memory_valid"][:, 0].sum() == 6  # cond frame 0 + recent frames 1..5 (frame 0 is not also recent)
    assert out["memory_valid"][:, 1].sum() == 1 and out["obj_ptr_valid"][:, 1].sum() == 1
    bank.remove_object(a)
    assert bank.batch == 1 and _prepare(bank, 6)["memory_valid"][:, 0].sum() == 1


def test_full_conditioning_slots_evict_the_oldest() -> None:
    bank = DeviceBank(C.BankConfig(), SelectionRules())
    b = bank.add_object()
    slots = [bank.add_cond(b, t)[0] for t in range(4)]
    slot, evicted = bank.add_cond(b, 9)
    assert evicted == 0 and slot == slots[0] and sorted(bank.cond[b]) == [1, 2, 3, 9]


def test_strided_models_are_refused() -> None:
    from sam2rt.errors import Sam2rtError

    with pytest.raises(Sam2rtError, match="stride"):
        DeviceBank(C.BankConfig(), SelectionRules(stride=2))


@pytest.mark.parametrize("max_cond", [-1, 2])
def test_vectorised_prepare_equals_the_reference(max_cond: int) -> None:
    """Random histories of objects added, conditioning frames, removals: both ways give the same arrays."""
    rng = np.random.default_rng(max_cond + 5)
    bank = DeviceBank(C.BankConfig(), SelectionRules(max_cond_frames=max_cond))
    bank.add_object()
    bank.add_cond(0, 0)
    bank.commit(0, (0,))
    for t in range(1, 80):
        cond = tuple(b for b in range(bank.batch) if rng.random() < 0.1)
        if rng.random() < 0.05 and bank.batch < 5:
            cond += (bank.add_object(),)
        if rng.random() < 0.03 and bank.batch > 1:
            bank.remove_object(int(rng.integers(bank.batch)))
            cond = ()
        for b in cond:
            bank.add_cond(b, t)
        bank.commit(t, cond)
        a = _prepare(bank, t + 1)
        B = bank.batch
        r = {n: np.zeros_like(v) for n, v in a.items()}
        bank.prepare_reference(t + 1, r)
        for name in a:
            np.testing.assert_array_equal(a[name], r[name], err_msg=f"{name} at frame {t + 1}")
        one, one_ref = {n: v[:, :1].copy() for n, v in a.items()}, {n: v[:, :1].copy() for n, v in a.items()}
        bank.prepare(t + 1, one, objects=[B - 1])
        bank.prepare_reference(t + 1, one_ref, objects=[B - 1])
        for name in one:
            np.testing.assert_array_equal(one[name], one_ref[name])


def test_valid_prefix_covers_every_valid_slot_and_binds_views() -> None:
    valid = np.zeros((10, 2), bool)
    assert valid_prefix(valid, np.zeros((19, 2), bool)) == (1, 1)  # an empty bank: one masked slot
    valid[2, 0] = valid[6, 1] = True
    ptrs = np.zeros((19, 2), bool)
    ptrs[[0, 15], 1] = True
    assert valid_prefix(valid, ptrs) == (7, 16)
    bufs = BufferSet(HostAllocator(), OBJECT_TENSORS, _dims(2))
    cut = bind_prefix(bufs.bufs, 7, 16)
    for name in ("memory", "memory_valid", "memory_tpos"):
        assert cut[name].shape[0] == 7 and cut[name].ptr == bufs[name].ptr
    for name in ("obj_ptrs", "obj_ptr_valid", "obj_ptr_tpos"):
        assert cut[name].shape[0] == 16 and cut[name].ptr == bufs[name].ptr
    assert cut["point_coords"] is bufs["point_coords"]
