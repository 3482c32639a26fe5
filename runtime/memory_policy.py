"""Memory policies: which mask candidate an object keeps on a frame and which past frames it remembers.

``Sam2Memory`` (``memory="sam2"``, the default) is the official SAM 2 behaviour: the decoder graph's own
choice, the ``num_maskmem - 1`` frames just before the current one. ``SamuraiMemory`` (``memory="samurai"``)
is SAMURAI's motion-aware memory (Yang et al. 2024, "SAMURAI: Adapting Segment Anything Model for Zero-Shot
Visual Tracking with Motion-Aware Memory", arXiv 2411.11922), as its reference code runs it:

- a Kalman filter per object on the box of its mask (``runtime/kalman.py``); once the track has been stable
  (predicted IoU above ``stable_iou`` for ``stable_frames`` frames) the multimask candidate is chosen by
  ``kf_weight * IoU(filter box, candidate box) + (1 - kf_weight) * predicted IoU``;
- objects count as present above ``min_obj_score`` (SAMURAI's configs: -1, SAM 2: 0);
- a frame enters the memory only if its predicted IoU, object score and motion score pass thresholds: the
  memory is the ``num_maskmem - 2`` most recent such frames and the previous frame, always. Frames less than
  2 after the object's first prompt never count (the reference, which starts every object on frame 0, scans
  down to frame 2).

Policies are plain host code over small arrays; both predictors and every backend call the same methods.
The per-object state (``SamuraiTrack``) is created, reset and removed with its object by the caller.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace

import numpy as np

from sam2rt import contract as C
from sam2rt.errors import Sam2rtError
from sam2rt.runtime.kalman import BoxKalman, box_iou
from sam2rt.runtime.outputs import _taps

MEMORIES = ("sam2", "samurai")


@dataclass(frozen=True)
class SamuraiConfig:
    """SAMURAI's parameters; defaults are its published SAM 2.1 configs (``configs/samurai/*.yaml``).

    stable_frames: frames of stable IoU before the filter takes part in the choice. stable_iou: predicted IoU
    a choice needs to count as stable (and to update the filter). kf_weight: weight of the filter's box IoU in
    the choice (0.15 for the large model, 0.25 for the others). memory_iou / memory_obj_score /
    memory_kf_score: what a frame's predicted IoU, object score logit and motion score must exceed to be
    remembered. min_obj_score: object score logit above which the object counts as present.
    """

    stable_frames: int = 15
    stable_iou: float = 0.3
    kf_weight: float = 0.25
    memory_iou: float = 0.5
    memory_obj_score: float = 0.0
    memory_kf_score: float = 0.0
    min_obj_score: float = -1.0

    @classmethod
    def for_model(cls, model: str, **overrides: float) -> "SamuraiConfig":
        """The published config of ``model`` (a sam2.1 model name), with ``overrides`` (None keeps a default)."""
        base = cls(kf_weight=0.15) if "large" in model else cls()
        values = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise Sam2rtError(f"unknown SAMURAI parameter(s) {sorted(unknown)}; they are "
                              f"{sorted(cls.__dataclass_fields__)}")
        cfg = replace(base, **values)
        if cfg.stable_frames < 1:
            raise Sam2rtError(f"stable_frames must be a positive number of frames, got {cfg.stable_frames}")
        if not 0.0 <= cfg.kf_weight <= 1.0:
            raise Sam2rtError(f"kf_weight must lie in [0, 1], got {cfg.kf_weight}")
        return cfg


@dataclass
class SamuraiTrack:
    """One object's motion state: its filter (None until the first multimask choice) and stable count."""

    kf: BoxKalman | None = None
    stable: int = 0
    valid: list[int] = field(default_factory=list)  # frames (sorted) that pass the memory thresholds
    start: int | None = None  # the frame of the object's first prompt


@dataclass(frozen=True)
class Choice:
    """One object's result on a frame: gated logits (1, 4h, 4h), gated pointer (256,), scores."""

    low_res: np.ndarray
    obj_ptr: np.ndarray
    iou: float
    kf_score: float | None


def mask_box(plane: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """Box (x0, y0, x1, y1) of ``resize_bilinear(plane, (size, size)) > 0``, or (0, 0, 0, 0) when empty.

    plane: (h, w) float32 low-res logits. Only the output rows/columns whose bilinear taps touch a positive
    logit are interpolated (a positive value needs a positive tap), with the taps and float32 operation
    order of ``outputs.threshold_resize`` (the official resize): the full-size mask is never made.
    """
    fg = plane > 0
    if not fg.any():
        return (0, 0, 0, 0)
    r0, r1, rw0, rw1 = _taps(plane.shape[0], size)
    c0, c1, cw0, cw1 = _taps(plane.shape[1], size)
    rows, cols = fg.any(axis=1), fg.any(axis=0)
    ys = np.flatnonzero(rows[r0] | rows[r1])
    xs = np.flatnonzero(cols[c0] | cols[c1])
    wide = plane[:, c0[xs]] * cw0[xs] + plane[:, c1[xs]] * cw1[xs]  # (h, X): width first
    block = wide[r0[ys]] * rw0[ys, None] + wide[r1[ys]] * rw1[ys, None]  # (Y, X)
    pos = block > 0
    yy, xx = ys[pos.any(axis=1)], xs[pos.any(axis=0)]
    if yy.size == 0:
        return (0, 0, 0, 0)
    return (int(xx[0]), int(yy[0]), int(xx[-1]), int(yy[-1]))


class Sam2Memory:
    """The official SAM 2 rules: the decoder's choice, the frames just before (``bank.fill``)."""

    name = "sam2"
    needs_candidates = False

    def new_track(self) -> None:
        return None

    def recent_frames(self, frame_idx: int, track: object, num_maskmem: int) -> list[tuple[int, int]] | None:
        """None: the bank's own rule (previous frames by distance, with stride and direction)."""
        return None

    def remember(self, track: object, frame_idx: int, iou: float | None, score: float,
                 kf_score: float | None) -> None:
        """Nothing to keep."""


class SamuraiMemory:
    """SAMURAI's motion-aware choice and memory (see the module docstring). ``image_size``: S of the model."""

    name = "samurai"
    needs_candidates = True

    def __init__(self, config: SamuraiConfig, image_size: int, no_obj_ptr: np.ndarray,
                 fixed_no_obj_ptr: bool = True) -> None:
        self.cfg, self.size = config, image_size
        self.no_obj_ptr = np.asarray(no_obj_ptr, np.float32)  # (256,)
        self.fixed_no_obj_ptr = fixed_no_obj_ptr

    def new_track(self) -> SamuraiTrack:
        return SamuraiTrack()

    # ---- the candidate -----------------------------------------------------------------------------
    def choose(self, track: SamuraiTrack, masks: np.ndarray, ious: np.ndarray, ptrs: np.ndarray, score: float,
               selected: int, multimask: bool) -> Choice:
        """One object's decoder outputs -> its result, updating its filter.

        masks (4, 4h, 4h) float32 ungated candidates, ious (4,) float32, ptrs (4, 256) float32 ungated
        pointers (0 = single-mask token, 1..3 = multimask), score: object score logit, selected: the graph's
        single-mask choice (used without multimask, where SAMURAI keeps SAM 2's choice).
        """
        present = np.float32(score) > np.float32(self.cfg.min_obj_score)
        kf_score = None
        if multimask:
            cand = masks[1:] if present else np.full_like(masks[1:], C.NO_OBJ_SCORE)
            k, kf_score = self._multimask(track, cand, ious[1:])
            index, token = k + 1, k + 1
        else:
            index, token = int(selected), 0
        low = masks[index] if present else np.full_like(masks[index], C.NO_OBJ_SCORE)
        lam = np.float32(1.0 if present else 0.0)
        ptr = ptrs[token]
        if self.fixed_no_obj_ptr:
            ptr = lam * ptr
        ptr = (ptr + (1 - lam) * self.no_obj_ptr).astype(np.float32)
        return Choice(low[None].astype(np.float32), ptr, float(ious[index]), kf_score)

    def choose_all(self, tracks: list[SamuraiTrack], head, multimask: bool):
        """A batched ``engine.HeadOutput`` with candidates -> the same with each object's choice (tracks[b])."""
        c = head.candidates
        picks = [self.choose(track, c["mask_candidates"][b], c["iou_candidates"][b], c["obj_ptr_candidates"][b],
                             float(head.object_score_logits[b, 0]), int(c["selected_candidate"][b]), multimask)
                 for b, track in enumerate(tracks)]
        nan = np.float32(np.nan)
        return replace(head, low_res_masks=np.stack([p.low_res for p in picks]),
                       obj_ptr=np.stack([p.obj_ptr for p in picks]),
                       iou=np.array([p.iou for p in picks], np.float32),
                       kf_score=np.array([nan if p.kf_score is None else p.kf_score for p in picks], np.float32))

    def _multimask(self, track: SamuraiTrack, cand: np.ndarray, ious: np.ndarray) -> tuple[int, float | None]:
        """SAMURAI's three cases on the 3 multimask candidates (3, 4h, 4h) and their IoUs (3,)."""
        cfg, stable_iou = self.cfg, np.float32(self.cfg.stable_iou)
        if track.kf is None or track.stable == 0:  # (re)start the filter on the best-IoU candidate
            k = int(np.argmax(ious))
            track.kf = BoxKalman(mask_box(cand[k], self.size))
            track.stable += 1
            return k, None
        track.kf.predict()
        if track.stable < cfg.stable_frames:  # not stable yet: SAM 2's choice, the filter only follows
            k = int(np.argmax(ious))
            if ious[k] > stable_iou:
                track.kf.update(mask_box(cand[k], self.size))
                track.stable += 1
            else:
                track.stable = 0
            return k, None
        boxes = [mask_box(c, self.size) for c in cand]
        predicted = track.kf.box()
        kf_ious = np.array([box_iou(predicted, b) for b in boxes], np.float32)  # (3,)
        w = cfg.kf_weight
        weighted = np.float32(w) * kf_ious + np.float32(1 - w) * ious
        k = int(np.argmax(weighted))
        if ious[k] < stable_iou:
            track.stable = 0
        else:
            track.kf.update(boxes[k])
        return k, float(kf_ious[k])

    # ---- the memory --------------------------------------------------------------------------------
    def passes(self, iou: float | None, score: float, kf_score: float | None) -> bool:
        """Whether a tracked frame with these scores may be remembered."""
        cfg = self.cfg
        return (iou is not None and iou > cfg.memory_iou and score > cfg.memory_obj_score
                and (kf_score is None or kf_score > cfg.memory_kf_score))

    def remember(self, track: SamuraiTrack, frame_idx: int, iou: float | None, score: float,
                 kf_score: float | None) -> None:
        """Record a non-conditioning frame's final scores (a frame recorded again is replaced)."""
        i = bisect.bisect_left(track.valid, frame_idx)
        if i < len(track.valid) and track.valid[i] == frame_idx:
            del track.valid[i]
        if frame_idx >= (track.start or 0) + 2 and self.passes(iou, score, kf_score):
            bisect.insort(track.valid, frame_idx)

    def forget(self, track: SamuraiTrack, frame_idx: int) -> None:
        """A frame that is no longer a non-conditioning frame of the object (it became a prompt frame)."""
        i = bisect.bisect_left(track.valid, frame_idx)
        if i < len(track.valid) and track.valid[i] == frame_idx:
            del track.valid[i]

    def recent_from(self, frame_idx: int, start: int, non_cond: dict, num_maskmem: int) -> list[tuple[int, int]]:
        """``recent_frames`` from an object's non-conditioning outputs (``bank.FrameOutput`` by frame);
        start: the object's first prompted frame."""
        valid = sorted(t for t, out in non_cond.items() if start + 2 <= t < frame_idx - 1 and
                       self.passes(out.iou, float(out.object_score_logits.reshape(-1)[0]), out.kf_score))
        return self.recent_frames(frame_idx, SamuraiTrack(valid=valid), num_maskmem)

    def recent_frames(self, frame_idx: int, track: SamuraiTrack, num_maskmem: int) -> list[tuple[int, int]]:
        """(memory_tpos, frame) of the remembered frames attention reads on ``frame_idx`` (forward only).

        The frames that passed before ``frame_idx - 1``, then ``frame_idx - 1`` itself (always), the last
        ``num_maskmem - 1`` of them; memory_tpos is their rank from the latest (0), as the reference encodes
        them (``num_maskmem - t_pos - 1``), not their distance.
        """
        end = bisect.bisect_left(track.valid, frame_idx - 1)
        frames = (track.valid[max(0, end - (num_maskmem - 2)):end] + [frame_idx - 1])[-(num_maskmem - 1):]
        return [(len(frames) - 1 - j, f) for j, f in enumerate(frames)]


MemoryPolicy = Sam2Memory | SamuraiMemory


def make_policy(memory: str, engine, samurai: SamuraiConfig | None = None) -> MemoryPolicy:
    """The policy for ``memory`` ("sam2" or "samurai") on a loaded ``engine.Engine``.

    samurai: SAMURAI's parameters; None takes the published config of the engine's model.
    """
    if memory not in MEMORIES:
        raise Sam2rtError(f"memory must be one of {MEMORIES}, got {memory!r}")
    if memory == "sam2":
        if samurai is not None:
            raise Sam2rtError("SAMURAI parameters apply to memory='samurai'; drop them or choose that memory")
        return Sam2Memory()
    tracking = engine.tracking
    if not tracking["pred_obj_scores"]:
        raise Sam2rtError(f"memory='samurai' needs a SAM 2.1 model with object scores; {engine.manifest.model_name} "
                          "has none")
    cfg = samurai or SamuraiConfig.for_model(engine.manifest.model_name)
    return SamuraiMemory(cfg, engine.size, engine.no_obj_ptr, bool(tracking["fixed_no_obj_ptr"]))
