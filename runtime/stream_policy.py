"""A choosing memory policy (SAMURAI) in the ``StreamTracker``: per-object state, the choice, the memories.

The decoder runs as always; its candidates, IoUs, candidate pointers and scores are downloaded (low-res, a
few hundred KB per object at 1024 px, never full-size masks), the policy chooses on the host, and the chosen
logits and pointer are uploaded into the step buffers, from where the next step encodes them exactly as it
encodes the graph's own choice. Per-object state lives here, in object order, and follows the tracker's
objects (added, corrected, removed, reset). Memories go to per-object slots (``PolicyBank``); the tracking
step itself is the default one (on TensorRT the same captured CUDA graph).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from sam2rt.runtime.backends.executor import BufferSet

if TYPE_CHECKING:
    from sam2rt.runtime.stream import StreamTracker

CANDIDATES = ("mask_candidates", "iou_candidates", "obj_ptr_candidates", "selected_candidate", "object_score_logits")


class PolicyStep:
    """The host side of a choosing policy for one stream."""

    def __init__(self, tracker: "StreamTracker") -> None:
        self.tracker, self.policy = tracker, tracker.policy
        self.tracks: list[Any] = []
        self.scores: list[tuple[float | None, float | None]] = []  # per object: (iou, kf score) of this frame

    def clear(self) -> None:
        """Forget every object (reset, load_first_frame)."""
        self.tracks, self.scores = [], []

    def add(self, track: Any, scores: tuple[float | None, float | None]) -> None:
        """A new object (its track made by ``policy.new_track()`` before its first prompt, on this frame)."""
        track.start = self.tracker.frame_idx
        self.tracks.append(track)
        self.scores.append(scores)

    def remove_object(self, b: int) -> None:
        del self.tracks[b], self.scores[b]

    def recent(self, b: int, frame_idx: int) -> list[tuple[int, int]]:
        """Object b's remembered frames for attention on ``frame_idx`` (``PolicyBank``'s callback)."""
        return self.policy.recent_frames(frame_idx, self.tracks[b], self.tracker.rules.num_maskmem)

    def commit(self, t: int, cond: tuple[int, ...]) -> None:
        """Frame t is final: record each tracked (non-conditioning) object's scores (before ``bank.commit``)."""
        tr = self.tracker
        for b, track in enumerate(self.tracks):
            if b in cond:
                self.policy.forget(track, t)
            else:
                iou, kf = self.scores[b]
                self.policy.remember(track, t, iou, float(tr._scores[b]), kf)

    def _download(self, bufs: BufferSet) -> dict[str, np.ndarray]:
        alloc = self.tracker.executor.allocator
        for name in CANDIDATES:
            alloc.download(bufs[name])
        self.tracker.executor.synchronize()
        return {name: bufs[name].mirror for name in CANDIDATES}

    def choose(self) -> None:
        """After a tracking step: each object's choice replaces the graph's in the step buffers."""
        tr = self.tracker
        objs, alloc = tr._objs, tr.executor.allocator
        out = self._download(objs)
        multimask = tr.engine.use_multimask(False, 0)
        for b, track in enumerate(self.tracks):
            c = self.policy.choose(track, out["mask_candidates"][b], out["iou_candidates"][b],
                                   out["obj_ptr_candidates"][b], float(out["object_score_logits"][b, 0]),
                                   int(out["selected_candidate"][b]), multimask)
            objs["low_res_masks"].mirror[b] = c.low_res
            objs["obj_ptr"].mirror[b] = c.obj_ptr
            self.scores[b] = (c.iou, c.kf_score)
        alloc.upload(objs["low_res_masks"])
        alloc.upload(objs["obj_ptr"])
        alloc.synchronize()

    def choose_prompt(self, track: Any, bufs: BufferSet,
                      multimask: bool) -> tuple[np.ndarray, np.ndarray, tuple[float, float | None]]:
        """A click/box prompt's choice (B = 1 prompt buffers): (logits (1, 1, 4h, 4h), pointer (256,), scores)."""
        out = self._download(bufs)
        c = self.policy.choose(track, out["mask_candidates"][0], out["iou_candidates"][0],
                               out["obj_ptr_candidates"][0], float(out["object_score_logits"][0, 0]),
                               int(out["selected_candidate"][0]), multimask)
        return c.low_res[None], c.obj_ptr, (c.iou, c.kf_score)

    def mask_pointer(self, bufs: BufferSet, mask_input: np.ndarray) -> np.ndarray:
        """A mask prompt's pointer with the decoder's gating at the policy's presence threshold (256,)."""
        out = self._download(bufs)
        eng = self.tracker.engine
        inner = np.float32(out["object_score_logits"][0, 0] > np.float32(self.policy.cfg.min_obj_score))
        raw = out["obj_ptr_candidates"][0, 0]  # single-mask token (no multimask for a mask prompt)
        ptr = (inner * raw if eng.tracking["fixed_no_obj_ptr"] else raw) + (1 - inner) * eng.no_obj_ptr
        lam = np.float32(1.0 if (mask_input > 0).any() else 0.0)
        if eng.tracking["fixed_no_obj_ptr"]:
            ptr = lam * ptr
        return (ptr + (1 - lam) * eng.no_obj_ptr).astype(np.float32)
