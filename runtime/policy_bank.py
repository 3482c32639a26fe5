"""The resident bank's slot bookkeeping when a memory policy picks the remembered frames (SAMURAI).

``DeviceBank`` moves frame t-1 from the newest ring slot to ring slot ``(t-1) % (ring - 1)`` for every object:
right for SAM 2, whose memories are the frames just before. A policy that remembers older frames (the last
ones that passed its thresholds) needs them kept past the ring's turn, and objects remember different frames.
Here each object has its own frame -> ring slot map. The tracking step is DeviceBank's, unchanged (the memory
encoder writes the newest slot, so the same CUDA graph is captured); only the move out of the newest slot
differs: object b's column of frame t-1 goes to a ring slot that holds no frame b still needs, and only where b
will read that frame again (at most ``num_maskmem - 2`` older frames are read, so a slot is always free).
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
        self.mem_of: list[dict[int, int]] = []  # per object: frame -> memory slot (ring slots, the newest included)
        self._moves: list[tuple[int, int]] = []  # (ring slot, object) of the last commit

    def add_object(self) -> int:
        self.mem_of.append({})
        return super().add_object()

    def remove_object(self, b: int) -> None:
        del self.mem_of[b]
        super().remove_object(b)

    def commit(self, frame_idx: int, cond_objects: tuple[int, ...] = ()) -> tuple[int, int] | None:
        """``DeviceBank.commit`` for the pointers; memories per object (``memory_moves``).

        The policy must have recorded ``frame_idx``'s scores: what each object reads from ``frame_idx + 1`` on
        decides which of its frames stay.
        """
        old = self.newest
        moved = super().commit(frame_idx, cond_objects)
        self.mem_frames[:] = -1  # the distance rule of DeviceBank.prepare finds no recent memory
        self._moves = []
        older = set(range(self.mem_ring - 1))  # ring slots before the newest
        for b, mem in enumerate(self.mem_of):
            needed = {f for _, f in self.recent(b, frame_idx + 1)}
            held = mem.pop(old, None) is not None  # b's column of the newest slot is its memory of ``old``
            for f in [f for f in mem if f not in needed]:
                del mem[f]
            if held and old in needed:
                slot = min(older - set(mem.values()))
                mem[old] = slot
                self._moves.append((slot, b))
            if b not in cond_objects:
                mem[frame_idx] = self.mem_new
        return moved

    def memory_moves(self, moved: tuple[int, int]) -> list[tuple[int, int | None]]:
        """Object columns leaving the newest memory slot: ``(ring slot, object)`` per object that reads it again."""
        return list(self._moves)

    def prepare(self, frame_idx: int, out: dict[str, np.ndarray], objects: list[int] | None = None) -> None:
        """``DeviceBank.prepare`` (pointers, conditioning frames), recent memories from the policy."""
        super().prepare(frame_idx, out, objects)
        limit = attended_cond_frames(self.rules, self.bank)
        for j, b in enumerate(range(self.batch) if objects is None else objects):
            selected, unselected = select_closest_cond_frames(frame_idx, self.cond[b], limit)
            for f in unselected:  # counted as recent only where the policy picks them
                out["memory_valid"][self.cond_slot(b, f)[0], j] = False
            for tpos, f in self.recent(b, frame_idx):
                slot = self.mem_of[b].get(f)
                if slot is None and f in unselected:
                    slot = self.cond_slot(b, f)[0]
                if slot is not None:
                    out["memory_valid"][slot, j] = True
                    out["memory_tpos"][slot, j] = tpos
