"""The resident memory bank's slot bookkeeping (the memories live in the executor's buffers).

Layout (slot-major, as the contract): memory (M, B, hw, 64), pointers (P, B, 256). The rings come first,
the conditioning frames follow them (memory slot ``mem_ring + c``, pointer slot ``ptr_ring + c`` for
conditioning index c, taken lowest first). The last slot of each ring (``mem_new``, ``ptr_new``) holds the
newest frame: the memory encoder and the pointer copy of the tracking step always write there, so the
addresses a captured step binds never depend on the frame (one CUDA graph per object count). The ring slots
before it hold older frames: when frame t is committed, frame t-1 moves from the newest slot to ring slot
``(t-1) % (ring - 1)`` by a device copy the caller makes before the step (outside any graph). Per step only
the small valid/tpos arrays change; they are computed on the host with the official selection rules (the
host path's ``BankInputs.fill``) and uploaded from pinned memory inside the step.

Only the slots up to the last valid one are bound (``valid_prefix``, ``bind_prefix``): rings first, so in
steady state a stream with one conditioning frame binds 6 + 1 of the 10 memory slots and 15 + 1 of the 19
pointer slots, and attention costs what the official concatenation of the existing memories costs. The
slots left inside the prefix are masked as before; attention is invariant to the order of its keys.
"""

from __future__ import annotations

import numpy as np

from sam2rt import contract as C
from sam2rt.errors import Sam2rtError
from sam2rt.runtime.backends.cuda import Buf
from sam2rt.runtime.bank import SelectionRules, _previous_frame, attended_cond_frames, select_closest_cond_frames

# memory-attention inputs cut to the bound prefix of memory slots (M) and of pointer slots (P)
MEMORY_INPUTS = ("memory", "memory_valid", "memory_tpos")
POINTER_INPUTS = ("obj_ptrs", "obj_ptr_valid", "obj_ptr_tpos")


def valid_prefix(memory_valid: np.ndarray, obj_ptr_valid: np.ndarray) -> tuple[int, int]:
    """Slots to bind, ``(m, p)``: up to the last valid memory (M, B) and pointer (P, B) slot of any object.

    At least 1 each (an empty bank binds one masked slot: attention then adds no_mem_embed).
    """
    def last(valid: np.ndarray) -> int:
        used = np.flatnonzero(valid.any(axis=1))
        return int(used[-1]) + 1 if used.size else 1

    return last(memory_valid), last(obj_ptr_valid)


def bind_prefix(tensors: dict[str, Buf], m: int, p: int) -> dict[str, Buf]:
    """``tensors`` with the bank inputs cut to their first ``m`` memory and ``p`` pointer slots (same addresses:
    prefixes of slot-major buffers are contiguous)."""
    cut = {name: tensors[name].prefix(m) for name in MEMORY_INPUTS}
    cut.update({name: tensors[name].prefix(p) for name in POINTER_INPUTS})
    return {**tensors, **cut}


class DeviceBank:
    """Slot bookkeeping of the resident bank for the objects of one stream, tracked forward.

    Holds which frame each slot of each object holds; the memories themselves live in the executor's
    buffers (laid out by ``plan_step`` for the current object count). Objects come and go (``add_object``,
    ``remove_object``): rows here follow the object columns of the buffers.

    Args:
        bank: capacities; rules: the model's selection rules (stride 1, as every official model).
    """

    def __init__(self, bank: C.BankConfig, rules: SelectionRules) -> None:
        self.bank, self.rules = bank, rules
        self.mem_ring = bank.memory_slots - bank.cond_slots
        self.ptr_ring = bank.ptr_slots - bank.cond_slots
        if rules.stride != 1:
            raise Sam2rtError(f"the resident bank keeps frames in rings, which needs memory stride 1; this model has "
                              f"{rules.stride}: use VideoPredictor instead")
        if self.mem_ring < max(rules.num_maskmem - 1, 2) or self.ptr_ring < max(rules.max_obj_ptrs - 1, 2):
            raise Sam2rtError(f"the bank ({self.mem_ring} recent slots, {self.ptr_ring} pointer slots) is smaller "
                              f"than the model reads ({rules.num_maskmem - 1}, {rules.max_obj_ptrs - 1}); re-export")
        self.cond: list[dict[int, int]] = []  # per object: frame -> conditioning slot
        # frame held by each ring slot, per object; the last column is the newest slot
        self.mem_frames = np.full((0, self.mem_ring), -1, np.int64)
        self.ptr_frames = np.full((0, self.ptr_ring), -1, np.int64)
        self.newest = -1  # the frame in the newest slots (-1: none yet)
        self.mem_new = self.mem_ring - 1  # the last ring slot
        self.ptr_new = self.ptr_ring - 1

    @property
    def batch(self) -> int:
        return len(self.cond)

    def add_object(self) -> int:
        """A new object with an empty bank (its column is appended); returns its index."""
        self.cond.append({})
        self.mem_frames = np.concatenate([self.mem_frames, np.full((1, self.mem_ring), -1, np.int64)])
        self.ptr_frames = np.concatenate([self.ptr_frames, np.full((1, self.ptr_ring), -1, np.int64)])
        return self.batch - 1

    def remove_object(self, b: int) -> None:
        del self.cond[b]
        self.mem_frames = np.delete(self.mem_frames, b, axis=0)
        self.ptr_frames = np.delete(self.ptr_frames, b, axis=0)

    def _mem_pos(self, frames: np.ndarray | int) -> np.ndarray | int:
        """Ring column of each frame: the last for the newest frame, else ``frame % (ring - 1)``."""
        return np.where(frames == self.newest, self.mem_ring - 1, frames % (self.mem_ring - 1))

    def _ptr_pos(self, frames: np.ndarray | int) -> np.ndarray | int:
        return np.where(frames == self.newest, self.ptr_ring - 1, frames % (self.ptr_ring - 1))

    def mem_slot(self, frame_idx: int) -> int:
        """The memory slot that holds (or will hold) ``frame_idx``'s memory (a ring slot)."""
        return int(self._mem_pos(frame_idx))

    def ptr_slot(self, frame_idx: int) -> int:
        """The pointer slot that holds (or will hold) ``frame_idx``'s pointer (a ring slot)."""
        return int(self._ptr_pos(frame_idx))

    def cond_slot(self, b: int, frame_idx: int) -> tuple[int, int]:
        """Object ``b``'s conditioning frame ``frame_idx``: its ``(memory slot, pointer slot)``."""
        c = self.cond[b][frame_idx]
        return self.mem_ring + c, self.ptr_ring + c

    def add_cond(self, b: int, frame_idx: int) -> tuple[int, int | None]:
        """Reserve a conditioning index c of object ``b`` for ``frame_idx``: ``(c, evicted frame or None)``
        (slots: ``cond_slot``).

        With every conditioning slot taken, the oldest conditioning frame gives its slot up: forward in a
        stream, the closest conditioning frames (what attention selects when there are more than it reads)
        are the newest.
        """
        cond = self.cond[b]
        if frame_idx in cond:
            return cond[frame_idx], None
        free = sorted(set(range(self.bank.cond_slots)) - set(cond.values()))
        evicted = None
        if not free:
            evicted = min(cond)
            free = [cond.pop(evicted)]
        cond[frame_idx] = free[0]
        return free[0], evicted

    def commit(self, frame_idx: int, cond_objects: tuple[int, ...] = ()) -> tuple[int, int] | None:
        """Record that every object's memory and pointer of ``frame_idx`` go into the newest slots (for the objects
        in ``cond_objects`` the frame is a conditioning frame: copied to a cond slot, not kept as recent).

        Returns ``(memory slot, pointer slot)`` the previous newest frame moves to: the caller copies slot
        ``mem_new`` there (and ``ptr_new``), on the device, before the memory encoder overwrites it; or None.
        """
        moved = None
        if self.newest >= 0:
            mem_pos, ptr_pos = self.newest % (self.mem_ring - 1), self.newest % (self.ptr_ring - 1)
            self.mem_frames[:, mem_pos] = self.mem_frames[:, -1]
            self.ptr_frames[:, ptr_pos] = self.ptr_frames[:, -1]
            moved = (mem_pos, ptr_pos)
        self.newest = frame_idx
        self.mem_frames[:, -1] = frame_idx
        self.ptr_frames[:, -1] = frame_idx
        for b in cond_objects:
            self.mem_frames[b, -1] = -1
            self.ptr_frames[b, -1] = -1
        return moved

    def prepare(self, frame_idx: int, out: dict[str, np.ndarray], objects: list[int] | None = None) -> None:
        """Write valid flags and temporal positions for attention on ``frame_idx`` into ``out``.

        out: host arrays memory_valid/memory_tpos (M, B'), obj_ptr_valid/obj_ptr_tpos (P, B'); column j is
        object ``objects[j]`` (default: every object). Follows ``BankInputs.fill`` for a forward stream
        (num_frames None). The rings are read for all objects at once (this runs every frame).
        """
        for a in out.values():
            a[...] = 0
        rules, mem_c, ptr_c = self.rules, self.mem_ring, self.ptr_ring  # where conditioning slots start
        objs = np.arange(self.batch) if objects is None else np.asarray(objects, np.int64)
        limit = attended_cond_frames(rules, self.bank)
        t_diff_max = np.float32(max(rules.max_obj_ptrs - 1, 1))
        cols = np.arange(len(objs))
        # recent memories: frame t-k at temporal position k-1 (k = 1..num_maskmem-1), where its ring slot holds it
        k = np.arange(1, rules.num_maskmem)
        frames = frame_idx - k
        slots = self._mem_pos(frames)
        held = (self.mem_frames[objs][:, slots] == frames) & (frames >= 0)  # (B', K)
        jj, kk = np.nonzero(held)
        out["memory_valid"][slots[kk], cols[jj]] = True
        out["memory_tpos"][slots[kk], cols[jj]] = k[kk] - 1
        # pointers of the frames t-d, d = 1..max_obj_ptrs-1
        d = np.arange(1, rules.max_obj_ptrs)
        frames = frame_idx - d
        slots = self._ptr_pos(frames)
        held = (self.ptr_frames[objs][:, slots] == frames) & (frames >= 0)
        jj, dd = np.nonzero(held)
        out["obj_ptr_valid"][slots[dd], cols[jj]] = True
        out["obj_ptr_tpos"][slots[dd], cols[jj]] = d[dd].astype(np.float32) / t_diff_max
        for j, b in enumerate(objs.tolist()):
            selected, unselected = select_closest_cond_frames(frame_idx, self.cond[b], limit)
            for t, c in selected.items():
                out["memory_valid"][mem_c + c, j] = True
                out["memory_tpos"][mem_c + c, j] = rules.num_maskmem - 1
                if not (rules.only_past_ptrs and t > frame_idx):
                    out["obj_ptr_valid"][ptr_c + c, j] = True
                    out["obj_ptr_tpos"][ptr_c + c, j] = np.float32(frame_idx - t) / t_diff_max
            for t, c in unselected.items():  # conditioning frames beyond the attended ones count as recent
                if 1 <= frame_idx - t < rules.num_maskmem:
                    out["memory_valid"][mem_c + c, j] = True
                    out["memory_tpos"][mem_c + c, j] = frame_idx - t - 1
                if 1 <= frame_idx - t < rules.max_obj_ptrs:
                    out["obj_ptr_valid"][ptr_c + c, j] = True
                    out["obj_ptr_tpos"][ptr_c + c, j] = np.float32(frame_idx - t) / t_diff_max

    def prepare_reference(self, frame_idx: int, out: dict[str, np.ndarray], objects: list[int] | None = None) -> None:
        """``prepare`` written per object and frame after ``BankInputs.fill`` (the check of the vectorised one)."""
        for a in out.values():
            a[...] = 0
        rules = self.rules
        limit = attended_cond_frames(rules, self.bank)
        t_diff_max = np.float32(max(rules.max_obj_ptrs - 1, 1))
        for j, b in enumerate(range(self.batch) if objects is None else objects):
            selected, unselected = select_closest_cond_frames(frame_idx, self.cond[b], limit)
            for c in selected.values():
                slot = self.mem_ring + c
                out["memory_valid"][slot, j] = True
                out["memory_tpos"][slot, j] = rules.num_maskmem - 1
            for t_pos in range(1, rules.num_maskmem):
                prev = _previous_frame(frame_idx, rules.num_maskmem - t_pos, 1, False)
                slot = self._memory_of(b, prev, unselected)
                if slot is not None:
                    out["memory_valid"][slot, j] = True
                    out["memory_tpos"][slot, j] = rules.num_maskmem - t_pos - 1
            for t, c in selected.items():
                if rules.only_past_ptrs and t > frame_idx:
                    continue
                slot = self.ptr_ring + c
                out["obj_ptr_valid"][slot, j] = True
                out["obj_ptr_tpos"][slot, j] = np.float32(frame_idx - t) / t_diff_max
            for t_diff in range(1, rules.max_obj_ptrs):
                t = frame_idx - t_diff
                if t < 0:
                    break
                slot = self._pointer_of(b, t, unselected)
                if slot is not None:
                    out["obj_ptr_valid"][slot, j] = True
                    out["obj_ptr_tpos"][slot, j] = np.float32(t_diff) / t_diff_max

    def _memory_of(self, b: int, frame: int, unselected: dict[int, int]) -> int | None:
        if frame in unselected:
            return self.mem_ring + unselected[frame]
        if frame < 0:
            return None
        slot = self.mem_slot(frame)
        return slot if self.mem_frames[b, slot] == frame else None

    def _pointer_of(self, b: int, frame: int, unselected: dict[int, int]) -> int | None:
        if frame in unselected:
            return self.ptr_ring + unselected[frame]
        slot = self.ptr_slot(frame)
        return slot if self.ptr_frames[b, slot] == frame else None
