"""The resident bank's slot bookkeeping when a memory policy picks the remembered frames (SAMURAI).

``DeviceBank`` keeps frame f's memory in ring slot ``f % ring`` for every object: right for SAM 2, whose
memories are the frames just before. A policy that remembers older frames (the last ones that passed its
thresholds) needs them kept past the ring's turn, and objects remember different frames. Here each object
has its own frame -> ring slot map: frame t goes into a slot that holds no frame the object still needs
(after t, at most ``num_maskmem - 1`` frames, t included, so a slot is always free); the memory encoder
writes into a scratch slot and each object's column is copied into its own slot (memory-side copies).
Pointers (by distance, unchanged by the policy) and conditioning slots stay as in ``DeviceBank``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from sam2rt import contract as C
from sam2rt.runtime.backends.device_bank import DeviceBank
from sam2rt.runtime.bank import SelectionRules, attended_cond_frames, select_closest_cond_frames

Recent = Callable[[int, int], list[tuple[int, int]]]  # (object, frame) -> [(memory_tpos, frame), ...]


class PolicyBank(DeviceBank):
    """``DeviceBank`` whose recent memories follow ``recent(b, frame_idx)`` (a memory policy's choice)."""

    def __init__(self, bank: C.BankConfig, rules: SelectionRules, recent: Recent) -> None:
        super().__init__(bank, rules)
        self.recent = recent
        self.mem_of: list[dict[int, int]] = []  # per object: frame -> ring slot (absolute slot index)

    def add_object(self) -> int:
        self.mem_of.append({})
        return super().add_object()

    def remove_object(self, b: int) -> None:
        del self.mem_of[b]
        super().remove_object(b)

    def place(self, b: int, frame_idx: int) -> int:
        """The ring slot for object ``b``'s memory of ``frame_idx`` (tracked, not conditioning).

        Called when that memory is written (the start of frame_idx + 1's step): slots of frames the object
        no longer reads from frame_idx + 1 on are reused.
        """
        mem = self.mem_of[b]
        needed = {f for _, f in self.recent(b, frame_idx + 1)} - {frame_idx}
        for f in [f for f in mem if f not in needed]:
            del mem[f]
        ring = {self.mem_slot(i) for i in range(self.mem_ring)}  # DeviceBank's ring slots, whatever its layout
        slot = min(ring - set(mem.values()))
        mem[frame_idx] = slot
        return slot

    def cond_memory_slot(self, b: int, frame_idx: int) -> int:
        """The memory slot of object b's conditioning frame (``DeviceBank.cond_slot`` where it has one)."""
        cond_slot = getattr(super(), "cond_slot", None)
        return cond_slot(b, frame_idx)[0] if cond_slot is not None else self.cond[b][frame_idx]

    def commit(self, frame_idx: int, cond_objects: tuple[int, ...] = ()) -> None:
        """Pointers as ``DeviceBank``; memories are placed per object by ``place``."""
        super().commit(frame_idx, cond_objects)
        self.mem_frames[:] = -1  # the distance rule of DeviceBank.prepare finds no recent memory

    def prepare(self, frame_idx: int, out: dict[str, np.ndarray], objects: list[int] | None = None) -> None:
        """``DeviceBank.prepare`` (pointers, conditioning frames), recent memories from the policy."""
        super().prepare(frame_idx, out, objects)
        limit = attended_cond_frames(self.rules, self.bank)
        for j, b in enumerate(range(self.batch) if objects is None else objects):
            selected, unselected = select_closest_cond_frames(frame_idx, self.cond[b], limit)
            for f in unselected:  # counted as recent only where the policy picks them
                out["memory_valid"][self.cond_memory_slot(b, f), j] = False
            for tpos, f in self.recent(b, frame_idx):
                slot = self.mem_of[b].get(f)
                if slot is None and f in unselected:
                    slot = self.cond_memory_slot(b, f)
                if slot is not None:
                    out["memory_valid"][slot, j] = True
                    out["memory_tpos"][slot, j] = tpos
