"""The prompt step of the ``StreamTracker``: one object, on the current frame, through the executor.

Runs on its own small buffer set (B = 1, N = the prompt's points) so the tracking step's buffers, and the
graphs captured with them, stay untouched. A correction reads its object's column of the resident bank by
memory-side copies of the selected slots (no host round trip of memories); the result is written into the
object's column of the step buffers (``store``), from where the next step encodes it as that frame's memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sam2rt.runtime.backends.device_bank import bind_prefix, valid_prefix
from sam2rt.runtime.backends.executor import CONTROLS, OBJECT_TENSORS, BufferSet
from sam2rt.runtime.imageops import resize_bilinear

if TYPE_CHECKING:
    from sam2rt.runtime.stream import StreamTracker


class PromptRunner:
    """Prompt results for one object: ``points`` (clicks/box, memory-conditioned) and ``mask``."""

    def __init__(self, tracker: "StreamTracker") -> None:
        self.tracker = tracker
        self.bufs: BufferSet | None = None

    def _buffers(self, n: int) -> BufferSet:
        if self.bufs is None or self.bufs["point_coords"].shape[1] < n:
            if self.bufs is not None:
                self.tracker.executor.release(self.bufs)
            dims = {**self.tracker.dims, "B": 1, "N": max(n, self.tracker.engine.manifest.bank.max_points + 2)}
            self.bufs = BufferSet(self.tracker.executor.allocator, OBJECT_TENSORS, dims)
        return self.bufs

    def points(self, t: int, b: int | None, is_init: bool, pts: np.ndarray, lbl: np.ndarray,
               prev: np.ndarray | None) -> tuple[np.ndarray, None, float]:
        """Clicks (N, 2) model pixels / labels (N,) for object ``b`` (None: new) on frame t.

        prev: (1, 1, 4h, 4h) previous logits of this object on frame t (refinement), or None.
        Returns (low-res logits (1, 1, 4h, 4h) float32, None (the pointer stays in the buffers), score).
        """
        tr, n = self.tracker, len(lbl)
        p, ex = self._buffers(n), tr.executor
        alloc = ex.allocator
        controls = {name: p[name].mirror for name in CONTROLS}
        if is_init:
            for a in controls.values():
                a[...] = 0  # an empty bank: attention adds no_mem_embed (the official first prompt)
        else:
            tr.bank.prepare(t, controls, objects=[b])
            for name, valid in (("memory", "memory_valid"), ("obj_ptrs", "obj_ptr_valid")):
                for slot in np.flatnonzero(controls[valid][:, 0]):
                    alloc.copy(p[name].slot(int(slot)).slot(0), tr._objs[name].slot(int(slot)).slot(b))
        for name in CONTROLS:
            alloc.upload(p[name])
        coords, labels = p["point_coords"].view((1, n, 2)), p["point_labels"].view((1, n))
        coords.mirror[0], labels.mirror[0] = pts, lbl
        p["mask_input"].mirror[...] = 0 if prev is None else prev
        p["has_mask_input"].mirror[...] = prev is not None
        p["multimask"].mirror[...] = tr.engine.use_multimask(is_init, n)
        for buf in (coords, labels, p["mask_input"], p["has_mask_input"], p["multimask"]):
            alloc.upload(buf)
        frame = tr._frame_bufs
        tensors = {**p.bufs, "vision_feat": tr.vision_feat(t), "feat_s0": frame["feat_s0"],
                   "feat_s1": frame["feat_s1"], "point_coords": coords, "point_labels": labels}
        ex.run("memory_attention", bind_prefix(tensors, *valid_prefix(controls["memory_valid"],
                                                                     controls["obj_ptr_valid"])))
        ex.run("mask_decoder", {**tensors, "image_embed": p["conditioned_feat"]})
        alloc.download(p["low_res_masks"])
        alloc.download(p["object_score_logits"])
        ex.synchronize()
        return p["low_res_masks"].mirror.copy(), None, float(p["object_score_logits"].mirror[0, 0])

    def mask(self, t: int, mask_input: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """The official ``_use_mask_as_output`` for a binary (1, 1, S, S) float32 mask prompt on frame t.

        Returns (low-res logits (1, 1, 4h, 4h), pointer (256,), score): the decoder runs only for the pointer.
        """
        tr = self.tracker
        eng, p, ex = tr.engine, self._buffers(1), tr.executor
        h4 = 4 * eng.h
        low = resize_bilinear(mask_input * 20.0 - 10.0, (h4, h4), antialias=True).astype(np.float32)
        blocks = mask_input.reshape(h4, 4, h4, 4)  # mask_downsample: a 4x4 stride-4 conv, one channel
        ds = (np.einsum("iajb,ab->ij", blocks, eng.mask_ds_w) + eng.mask_ds_b).astype(np.float32)
        coords, labels = p["point_coords"].view((1, 1, 2)), p["point_labels"].view((1, 1))
        coords.mirror[...], labels.mirror[...] = 0, -1  # the official padding point
        p["mask_input"].mirror[0, 0] = ds
        p["has_mask_input"].mirror[...], p["multimask"].mirror[...] = True, False
        for buf in (coords, labels, p["mask_input"], p["has_mask_input"], p["multimask"]):
            ex.allocator.upload(buf)
        frame = tr._frame_bufs
        ex.run("mask_decoder", {**p.bufs, "image_embed": tr.vision_feat(t), "feat_s0": frame["feat_s0"],
                                "feat_s1": frame["feat_s1"], "point_coords": coords, "point_labels": labels})
        ex.allocator.download(p["obj_ptr"])
        ex.synchronize()
        lam = np.float32(1.0 if (mask_input > 0).any() else 0.0)
        ptr = p["obj_ptr"].mirror[0].copy()
        if eng.tracking["pred_obj_scores"]:
            if eng.tracking["fixed_no_obj_ptr"]:
                ptr = lam * ptr
            ptr = ptr + (1 - lam) * eng.no_obj_ptr
        return low, ptr.astype(np.float32), float(20.0 * lam - 10.0)

    def store(self, b: int, low: np.ndarray, ptr: np.ndarray | None, score: float) -> None:
        """Make a prompt result object ``b``'s result on the current frame in the step buffers."""
        objs, alloc = self.tracker._objs, self.tracker.executor.allocator
        objs["low_res_masks"].mirror[b] = low[0]
        alloc.upload(objs["low_res_masks"].slot(b))
        if ptr is None:
            alloc.copy(objs["obj_ptr"].slot(b), self.bufs["obj_ptr"].slot(0))
        else:
            objs["obj_ptr"].mirror[b] = ptr
            alloc.upload(objs["obj_ptr"].slot(b))
        objs["object_score_logits"].mirror[b, 0] = score
        alloc.upload(objs["object_score_logits"].slot(b))
        objs["binarize"].mirror[b] = True  # prompted frames are encoded as the official preflight does
        alloc.synchronize()
