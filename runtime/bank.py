"""The memory bank: per-object frame outputs, and their selection into the fixed-capacity graph inputs.

Selection follows the official ``SAM2Base._prepare_memory_conditioned_features`` exactly: the closest
conditioning frames (temporal position 0), the 6 previous frames in processing direction, and object
pointers of the conditioning frames in the past plus up to 15 previous frames, with signed distances.
Memories are kept bfloat16-rounded, as the official predictor stores them (as raw bf16 bits, half the
bytes of float32).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sam2rt import contract as C


@dataclass
class FrameOutput:
    """One object's result on one frame (the official ``compact_current_out``).

    memory: (hw, 64) uint16 bfloat16 bits, or None until the memory encoder has run.
    pred_masks: (1, 1, 4h, 4h) float32 low-res mask logits (holes filled).
    obj_ptr: (256,) float32; object_score_logits: (1, 1) float32.
    iou / kf_score: the kept candidate's predicted IoU and motion score where a memory policy records them.
    """

    pred_masks: np.ndarray
    obj_ptr: np.ndarray
    object_score_logits: np.ndarray
    memory: np.ndarray | None = None
    iou: float | None = None
    kf_score: float | None = None


@dataclass
class ObjectOutputs:
    """The official ``output_dict`` of one object: conditioning and non-conditioning frames."""

    cond: dict[int, FrameOutput] = field(default_factory=dict)
    non_cond: dict[int, FrameOutput] = field(default_factory=dict)


def bf16_bits(memory: np.ndarray) -> np.ndarray:
    """float32 values already rounded to bfloat16 -> their uint16 bits."""
    return (memory.view(np.uint32) >> 16).astype(np.uint16)


def from_bf16_bits(bits: np.ndarray, out: np.ndarray) -> None:
    """uint16 bfloat16 bits -> float32, written into ``out``."""
    out.view(np.uint32)[...] = bits.astype(np.uint32) << 16


def select_closest_cond_frames(frame_idx: int, cond: dict[int, FrameOutput],
                               max_num: int) -> tuple[dict[int, FrameOutput], dict[int, FrameOutput]]:
    """The official rule: all conditioning frames, or the closest ``max_num`` (one before, one after first)."""
    if max_num == -1 or len(cond) <= max_num:
        return dict(cond), {}
    assert max_num >= 2, "at least 2 conditioning frames are attended to"
    selected: dict[int, FrameOutput] = {}
    before = max((t for t in cond if t < frame_idx), default=None)
    if before is not None:
        selected[before] = cond[before]
    after = min((t for t in cond if t >= frame_idx), default=None)
    if after is not None:
        selected[after] = cond[after]
    rest = sorted((t for t in cond if t not in selected), key=lambda t: abs(t - frame_idx))
    for t in rest[: max_num - len(selected)]:
        selected[t] = cond[t]
    return selected, {t: v for t, v in cond.items() if t not in selected}


@dataclass(frozen=True)
class SelectionRules:
    """The tracking settings that drive memory selection (from the manifest)."""

    num_maskmem: int = 7
    max_obj_ptrs: int = 16
    max_cond_frames: int = -1
    stride: int = 1
    only_past_ptrs: bool = True
    signed_tpos: bool = True

    @classmethod
    def from_tracking(cls, tracking: dict) -> "SelectionRules":
        return cls(
            num_maskmem=tracking["num_maskmem"],
            max_obj_ptrs=tracking["max_obj_ptrs_in_encoder"],
            max_cond_frames=tracking["max_cond_frames_in_attn"],
            stride=tracking["memory_temporal_stride_for_eval"],
            only_past_ptrs=tracking["only_obj_ptrs_in_the_past_for_eval"],
            signed_tpos=tracking["use_signed_tpos_enc_to_obj_ptrs"],
        )


def attended_cond_frames(rules: SelectionRules, bank: C.BankConfig) -> int:
    """How many conditioning frames attention reads: the model's limit, capped by the bank's slots."""
    if rules.max_cond_frames == -1:
        return bank.cond_slots
    return min(rules.max_cond_frames, bank.cond_slots)


class BankInputs:
    """Preallocated memory-attention inputs for B objects (slot-major, see the contract)."""

    def __init__(self, bank: C.BankConfig, batch: int, tokens: int) -> None:
        """``tokens``: memory tokens per slot (contract T: hw for SAM 2, the perceiver's latents for EdgeTAM)."""
        M, P = bank.memory_slots, bank.ptr_slots
        self.bank = bank
        self.memory = np.zeros((M, batch, tokens, C.MEM_DIM), np.float32)  # (M, B, T, 64)
        self.memory_valid = np.zeros((M, batch), np.bool_)
        self.memory_tpos = np.zeros((M, batch), np.int32)
        self.obj_ptrs = np.zeros((P, batch, C.HIDDEN_DIM), np.float32)
        self.obj_ptr_valid = np.zeros((P, batch), np.bool_)
        self.obj_ptr_tpos = np.zeros((P, batch), np.float32)
        self.used_memory = np.zeros(batch, np.int64)  # filled slots per object, packed from slot 0
        self.used_ptrs = np.zeros(batch, np.int64)

    def feeds(self) -> dict[str, np.ndarray]:
        """The graph inputs, cut to the slots any object uses.

        Slots are packed from 0, and memory order does not matter to attention (softmax over keys is
        permutation invariant, RoPE is per frame), so empty trailing slots are simply not sent: attention
        costs what the official concatenation of existing memories costs. Prefixes of slot-major arrays
        are contiguous, so nothing is copied.
        """
        m, p = max(int(self.used_memory.max()), 1), max(int(self.used_ptrs.max()), 1)
        return {"memory": self.memory[:m], "memory_valid": self.memory_valid[:m], "memory_tpos": self.memory_tpos[:m],
                "obj_ptrs": self.obj_ptrs[:p], "obj_ptr_valid": self.obj_ptr_valid[:p],
                "obj_ptr_tpos": self.obj_ptr_tpos[:p]}

    def clear(self, b: int) -> None:
        """Object ``b`` gets an empty bank: memory attention then adds no_mem_embed (first prompt)."""
        self.memory_valid[:, b] = False
        self.obj_ptr_valid[:, b] = False
        self.used_memory[b] = self.used_ptrs[b] = 0

    def fill(self, b: int, frame_idx: int, outputs: ObjectOutputs, rules: SelectionRules,
             num_frames: int | None, reverse: bool, recent: list[tuple[int, int]] | None = None) -> None:
        """Write object ``b``'s selected memories and pointers for ``frame_idx`` into the slots.

        recent: (memory_tpos, frame) of the non-conditioning memories chosen by a memory policy; None: the
        official frames just before ``frame_idx``.
        """
        self.clear(b)
        selected, unselected = select_closest_cond_frames(frame_idx, outputs.cond,
                                                          attended_cond_frames(rules, self.bank))
        for out in selected.values():
            self._put_memory(b, out, rules.num_maskmem - 1)
        for tpos, frame in recent or ():
            out = outputs.non_cond.get(frame, unselected.get(frame))
            if out is not None:
                self._put_memory(b, out, tpos)
        for t_pos in range(1, rules.num_maskmem if recent is None else 1):
            prev = _previous_frame(frame_idx, rules.num_maskmem - t_pos, rules.stride, reverse)
            out = outputs.non_cond.get(prev, unselected.get(prev))
            if out is not None:
                self._put_memory(b, out, rules.num_maskmem - t_pos - 1)
        self._fill_pointers(b, frame_idx, selected, unselected, outputs, rules, num_frames, reverse)

    def _put_memory(self, b: int, out: FrameOutput, tpos: int) -> None:
        assert out.memory is not None, "memories are encoded before they are attended to"
        slot = int(self.used_memory[b])
        assert slot < self.memory.shape[0], "selection never exceeds the bank's capacity"
        from_bf16_bits(out.memory, self.memory[slot, b])
        self.memory_valid[slot, b] = True
        self.memory_tpos[slot, b] = tpos
        self.used_memory[b] = slot + 1

    def _fill_pointers(self, b, frame_idx, selected, unselected, outputs, rules, num_frames, reverse) -> None:
        max_ptrs = rules.max_obj_ptrs if num_frames is None else min(num_frames, rules.max_obj_ptrs)
        sign = -1 if reverse else 1
        pos_ptrs = []
        for t, out in selected.items():
            if rules.only_past_ptrs and (t < frame_idx if reverse else t > frame_idx):
                continue
            pos_ptrs.append(((frame_idx - t) * sign if rules.signed_tpos else abs(frame_idx - t), out.obj_ptr))
        for t_diff in range(1, max_ptrs):
            t = frame_idx + t_diff if reverse else frame_idx - t_diff
            if t < 0 or (num_frames is not None and t >= num_frames):
                break
            out = outputs.non_cond.get(t, unselected.get(t))
            if out is not None:
                pos_ptrs.append((t_diff, out.obj_ptr))
        # float32 division, as torch divides an integer tensor by an int; guard the 1-frame video
        t_diff_max = np.float32(max(max_ptrs - 1, 1))
        for slot, (pos, ptr) in enumerate(pos_ptrs):
            self.obj_ptrs[slot, b] = ptr
            self.obj_ptr_valid[slot, b] = True
            self.obj_ptr_tpos[slot, b] = np.float32(pos) / t_diff_max
        self.used_ptrs[b] = len(pos_ptrs)


def _previous_frame(frame_idx: int, t_rel: int, stride: int, reverse: bool) -> int:
    """The official index of the memory frame ``t_rel`` steps back in processing direction."""
    if t_rel == 1:
        return frame_idx + 1 if reverse else frame_idx - 1
    if not reverse:
        return ((frame_idx - 2) // stride) * stride - (t_rel - 2) * stride
    return -(-(frame_idx + 2) // stride) * stride + (t_rel - 2) * stride
