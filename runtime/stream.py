"""``StreamTracker``: SAM 2 on a live camera, one frame at a time, bank resident in the backend's memory.

The API follows the popular "camera predictor" idiom::

    tracker = StreamTracker("model_dir")                 # or sam2rt.load(model_dir).stream()
    tracker.load_first_frame(frame)                      # frame 0
    tracker.add_new_prompt(0, obj_id=1, points=[[x, y]], labels=[1])
    while True:
        obj_ids, mask_logits = tracker.track(next_frame)  # (K, 1, H, W) float32 logits

One code path on every backend: every tensor is a buffer of the executor (numpy on ONNX Runtime CPU, device
memory on TensorRT), the bank is a fixed set of slots written in place (``DeviceBank``), and prompts (clicks,
box, mask; new objects, corrections, removals, ``reset``) are accepted on the current frame at any time.

Frame t's memory is encoded at the start of frame t+1's step, not in frame t's: a correction on frame t then
still finds frames t-6..t-1 in the rings (frame t's own memory would overwrite t-6), exactly as the official
predictor re-reads them, and the corrected mask becomes frame t's memory (``binarize`` set, as the official
``propagate_in_video_preflight`` encodes prompted frames). Results equal the official predictor run
incrementally: propagate up to the prompt frame, prompt, propagate from the next frame (docs/tracker.md).
"""

from __future__ import annotations

import numbers
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from sam2rt import contract as C
from sam2rt.errors import Sam2rtError
from sam2rt.runtime import prompts as P
from sam2rt.runtime.bank import SelectionRules
from sam2rt.runtime.backends.cuda import Buf
from sam2rt.runtime.backends.device_bank import DeviceBank, bind_prefix, valid_prefix
from sam2rt.runtime.backends.executor import (CONTROLS, FRAME_TENSORS, OBJECT_TENSORS, BufferSet, Executor, default_executor,
                                        relayout)
from sam2rt.runtime.engine import Engine
from sam2rt.runtime.imageops import mask_prompt_to_input
from sam2rt.runtime.outputs import TrackResult, check_options, fill_holes_near, make_result, resize_logits
from sam2rt.runtime.stream_prompts import PromptRunner


class StreamTracker:
    """Track objects through a live stream of frames (camera-predictor API), on any backend.

    model_dir: an exported model (``sam2rt export``). backend: "ort", "ort-gpu" or "trt" (engines in
    ``engine_dir``, default MODEL_DIR/engines). threads: 0 lets the backend choose.
    fill_hole_area: None takes the model's setting; 0 disables it (as the official predictor on CPU).
    bgr: frames arrive in OpenCV's BGR order and are converted. preprocess: "official" (bit-exact resize, as
    the official predictor; on TensorRT it runs on the GPU) or "fast" (OpenCV resize, ONNX Runtime only).
    engine/executor: share a loaded model between streams (``sam2rt.runtime.model.Model.stream``).
    """

    def __init__(self, model_dir: str | Path | None = None, backend: str = "ort", threads: int = 0,
                 fill_hole_area: int | None = None, bgr: bool = False, engine_dir: str | Path | None = None,
                 preprocess: str = "official", engine: Engine | None = None,
                 executor: Executor | None = None) -> None:
        if engine is None:
            if model_dir is None:
                raise Sam2rtError("StreamTracker needs a model directory (or a loaded engine)")
            engine = Engine(model_dir, backend=backend, threads=threads, engine_dir=engine_dir, preprocess=preprocess)
        self.engine = engine
        self.executor: Executor = executor or default_executor(engine.runners, engine.size, backend, preprocess)
        self.rules = SelectionRules.from_tracking(engine.tracking)
        self.fill_hole_area = engine.tracking["fill_hole_area"] if fill_hole_area is None else fill_hole_area
        self.bgr = bgr
        self.dims = {**C.resolve_dims(engine.size), "M": engine.manifest.bank.memory_slots,
                     "P": engine.manifest.bank.ptr_slots}
        DeviceBank(engine.manifest.bank, self.rules)  # checks the bank fits the model once
        self._closed = False
        self._frame_bufs: BufferSet | None = None
        self._objs: BufferSet | None = None  # per-object buffers for the current object count
        self._prompt = PromptRunner(self)
        self._size: tuple[int, int] | None = None
        self._t = -1
        self._clear_objects()

    def _clear_objects(self) -> None:
        self.bank = DeviceBank(self.engine.manifest.bank, self.rules)
        self._ids: list[int] = []
        self._added_at: list[int] = []  # frame each object got its first prompt (not tracked there)
        self._cond_now: list[bool] = []  # the current frame is a conditioning frame of the object
        self._points: list[tuple[np.ndarray, np.ndarray] | None] = []  # clicks on the current frame
        self._masks = np.zeros((0, 1, 4 * self.engine.h, 4 * self.engine.h), np.float32)  # current results
        self._scores = np.zeros((0,), np.float32)
        if self._objs is not None:
            self.executor.release(self._objs)
            self._objs = None

    # ---- introspection -----------------------------------------------------------------------------
    @property
    def frame_idx(self) -> int:
        """Index of the current (latest) frame; -1 before ``load_first_frame``."""
        return self._t

    @property
    def obj_ids(self) -> list[int]:
        """The tracked object ids, in output order."""
        return list(self._ids)

    def stored_bytes(self) -> int:
        """Bytes of the buffers the tracker holds (frame buffers, bank and step buffers for its objects)."""
        return sum(s.nbytes for s in (self._frame_bufs, self._objs, self._prompt.bufs) if s is not None)

    # ---- frames ------------------------------------------------------------------------------------
    def load_first_frame(self, frame: np.ndarray) -> None:
        """Forget everything (objects, prompts, results) and make ``frame`` frame 0.

        frame: (H, W, 3) uint8, RGB (BGR with ``bgr=True``).
        """
        self._require_open()
        rgb = self._to_rgb(frame, None)
        self._clear_objects()
        if self._frame_bufs is None:
            self._frame_bufs = BufferSet(self.executor.allocator, FRAME_TENSORS, self.dims)
        self._size, self._t = rgb.shape[:2], 0
        self._encode_frame(rgb)
        self.executor.synchronize()

    def _encode_frame(self, rgb: np.ndarray) -> None:
        """The image encoder on a new frame, into ``vision_feat`` (the previous frame's moves to vision_feat_prev)."""
        buf = self._frame_bufs
        self.executor.allocator.copy(buf["vision_feat_prev"], buf["vision_feat"])
        self.executor.preprocess(rgb, buf["image"], self.bgr)  # channel order handled inside
        self.executor.run("image_encoder", {"image": buf["image"], "vision_feat": buf["vision_feat"],
                                            "feat_s0": buf["feat_s0"], "feat_s1": buf["feat_s1"]})

    def vision_feat(self, t: int) -> Buf:
        """Frame t's (1, 256, h, h) image feature buffer: t is the current frame (or, in a step, the previous)."""
        assert t in (self._t, self._t - 1), f"frame {t}'s feature is gone (current frame {self._t})"
        return self._frame_bufs["vision_feat" if t == self._t else "vision_feat_prev"]

    def track(self, frame: np.ndarray, output: str = "logits", **options: Any) -> Any:
        """Append ``frame`` to the stream and track every object on it (one batched call per graph).

        frame: (H, W, 3) uint8 of the first frame's size. ``output="logits"`` returns ``(obj_ids,
        mask_logits)``, the logits (K, 1, H, W) float32 at frame resolution (> 0 is the object);
        ``output="result"`` returns a :class:`~sam2rt.runtime.outputs.TrackResult` (options: ``mask_size``,
        ``mask_dtype``, ``boxes``; see docs/tracker.md) without computing full-size float logits.
        """
        self._require_frame()
        rgb = self._to_rgb(frame, self._size)
        if not self._ids:
            raise Sam2rtError("no object to track; add one with add_new_prompt(...) on the current frame first")
        if output not in ("logits", "result"):
            raise Sam2rtError(f"output must be 'logits' or 'result', got {output!r}")
        if options and output != "result":
            raise Sam2rtError(f"options {sorted(options)} need output='result'")
        check_options(options)
        t, new = self._t, self._t + 1
        cond = tuple(b for b, c in enumerate(self._cond_now) if c)
        for b in cond:
            self.bank.add_cond(b, t)
        objs, frame = self._objs, self._frame_bufs
        alloc, run = self.executor.allocator, self.executor.run
        moved = self.bank.commit(t, cond)
        if moved is not None:  # frame t-1 leaves the newest slots for its ring slots (outside any graph)
            alloc.copy(objs["memory"].slot(moved[0]), objs["memory"].slot(self.bank.mem_new))
            alloc.copy(objs["obj_ptrs"].slot(moved[1]), objs["obj_ptrs"].slot(self.bank.ptr_new))
        self.bank.prepare(new, {n: objs[n].mirror for n in CONTROLS})
        bound = valid_prefix(objs["memory_valid"].mirror, objs["obj_ptr_valid"].mirror)  # slots attention reads
        self._encode_frame(rgb)
        # Every address below is the same on every frame for one object count (newest slots, the two
        # feature buffers); what changes per frame is in the pinned mirrors the uploads read: one CUDA graph.
        newest, newest_ptr = objs["memory"].slot(self.bank.mem_new), objs["obj_ptrs"].slot(self.bank.ptr_new)

        def encode() -> None:  # commit frame t: its memory and pointer into the newest slots
            alloc.upload(objs["binarize"])
            run("memory_encoder", {"vision_feat": frame["vision_feat_prev"], "mask_logits": objs["low_res_masks"],
                                   "binarize": objs["binarize"], "object_score_logits": objs["object_score_logits"],
                                   "memory": newest})
            self.executor.round_bank(newest)
            alloc.copy(newest_ptr, objs["obj_ptr"])

        def track_next() -> None:  # track frame t+1
            for name in CONTROLS:
                alloc.upload(objs[name])
            tensors = {**objs.bufs, "vision_feat": frame["vision_feat"], "feat_s0": frame["feat_s0"],
                       "feat_s1": frame["feat_s1"]}
            run("memory_attention", bind_prefix(tensors, *bound))
            run("mask_decoder", {**tensors, "image_embed": objs["conditioned_feat"]})
            alloc.download(objs["low_res_masks"])
            alloc.download(objs["object_score_logits"])

        if cond:  # a conditioning frame also goes to its object's cond slot (frames after prompts): not captured
            encode()
            for b in cond:
                mem_c, ptr_c = self.bank.cond_slot(b, t)
                alloc.copy(objs["memory"].slot(mem_c).slot(b), newest.slot(b))
                alloc.copy(objs["obj_ptrs"].slot(ptr_c).slot(b), newest_ptr.slot(b))
            track_next()
        else:
            self.executor.step(self._step_key(bound), lambda: (encode(), track_next()))
        self.executor.synchronize()
        self._t = new
        objs["binarize"].mirror[...] = False
        K = self.bank.batch
        self._cond_now, self._points = [False] * K, [None] * K
        low = objs["low_res_masks"].mirror
        self._masks = fill_holes_near(low, self.fill_hole_area)
        self._scores = objs["object_score_logits"].mirror[:, 0].copy()
        if output == "result":
            return make_result(new, self.obj_ids, self._masks, self._scores, self._size,
                               threshold=self._threshold(objs["low_res_masks"], low), **options)
        return self.obj_ids, resize_logits(self._masks, self._size)

    def _step_key(self, bound: tuple[int, int]) -> tuple[int, ...]:
        """What the captured step's bound addresses and shapes depend on: the object count (the buffers of one
        count are one generation of the executor; ring positions and temporal indices are device inputs) and
        the bound prefix of memory and pointer slots (constant once the rings are in use; the executor
        captures only a key that repeats)."""
        return (self.bank.batch, *bound)

    def _threshold(self, step_logits: Buf, low: np.ndarray) -> Any:
        """The executor's ``masks`` hook (None: the host's threshold_resize). It may bind the step's logits
        buffer where it holds exactly ``self._masks`` (no hole filled: an 8 us/object compare), else it uploads
        the filled logits; either way the masks equal the host path's."""
        hook = getattr(self.executor, "masks", None)
        if hook is None:
            return None
        same = self.fill_hole_area <= 0 or np.array_equal(self._masks, low)
        return partial(hook, device=step_logits if same else None)

    # ---- prompts -----------------------------------------------------------------------------------
    def add_new_prompt(self, frame_idx: int, obj_id: int, points=None, labels=None, bbox=None, mask=None,
                       clear_old_points: bool = True,
                       normalize_coords: bool = True) -> tuple[int, list[int], np.ndarray]:
        """Prompt an object (new or tracked) on the current frame with clicks, a box or a mask.

        points (N, 2) pixel x, y with labels (N,) 1 = positive / 0 = negative; bbox (4,) x0, y0, x1, y1;
        mask (H, W) bool (alone). Returns ``(frame_idx, obj_ids, mask_logits (K, 1, H, W) float32)`` for
        every object on this frame. A tracked object's prompt is a correction: its result on this frame is
        replaced and becomes this frame's memory; the bank is updated in place.
        """
        self._require_frame()
        self._check_current(frame_idx)
        P.check_obj_id(obj_id)
        H, W = self._size
        b = self._ids.index(obj_id) if obj_id in self._ids else None
        if mask is not None:
            if points is not None or labels is not None or bbox is not None:
                raise Sam2rtError("give either a mask or points/labels/bbox in one add_new_prompt call, not both")
            mask_input = mask_prompt_to_input(P.check_mask(mask), self.engine.size)
            pts = None
        else:
            pts, lbl = P.points_and_labels(points, labels, bbox, clear_old_points, normalize_coords, W, H)
            scale = np.array([W, H], np.float32) if normalize_coords else 1.0
            pts = (pts / scale * self.engine.size).astype(np.float32)
            old = self._points[b] if b is not None and not clear_old_points else None
            if old is not None:
                pts, lbl = np.concatenate([old[0], pts]), np.concatenate([old[1], lbl])
            P.check_point_count(lbl, self.engine.manifest.bank.max_points)
        limit = self.engine.manifest.bank.max_objects
        if b is None and len(self._ids) >= limit:
            raise Sam2rtError(f"this model tracks at most {limit} objects per stream (--max-objects at export); "
                              "remove one first")
        engine_limit = getattr(self.executor, "max_objects", None)
        if b is None and engine_limit is not None and len(self._ids) >= engine_limit:
            raise Sam2rtError(f"these engines take at most {engine_limit} objects; remove one first, or rebuild "
                              f"them for more: {self.executor.rebuild}")
        # from here on nothing can fail on the user's input
        t = self._t
        is_init = b is None or self._added_at[b] == t
        is_cond = is_init or bool(self.engine.tracking["add_all_frames_to_correct_as_cond"])
        if pts is None:
            low, ptr, score = self._prompt.mask(t, mask_input)
        else:
            prev = None if b is None else np.clip(self._masks[b:b + 1], -32.0, 32.0)
            low, ptr, score = self._prompt.points(t, b, is_init, pts, lbl, prev)
        low = fill_holes_near(low, self.fill_hole_area)
        if b is None:
            b = self._add_object(obj_id)
        self._prompt.store(b, low, ptr, score)
        self._points[b] = None if pts is None else (pts, lbl)
        self._cond_now[b] = is_cond
        self._masks, self._scores = self._masks.copy(), self._scores.copy()  # a returned TrackResult keeps its own
        self._masks[b], self._scores[b] = low[0], score
        return t, self.obj_ids, resize_logits(self._masks, (H, W))

    def _add_object(self, obj_id: int) -> int:
        """A new column in every per-object buffer (copied over on the memory side, old buffers freed)."""
        b = self.bank.add_object()
        self._resize(list(range(b)), b + 1)
        self._ids.append(obj_id)
        self._added_at.append(self._t)
        self._cond_now.append(True)
        self._points.append(None)
        self._masks = np.concatenate([self._masks, np.zeros((1, *self._masks.shape[1:]), np.float32)])
        self._scores = np.append(self._scores, np.float32(0))
        return b

    def _resize(self, keep: list[int], batch: int) -> None:
        old = self._objs
        new = BufferSet(self.executor.allocator, OBJECT_TENSORS, {**self.dims, "B": batch, "N": 1})
        relayout(old, new, [(b_old, b_new) for b_new, b_old in enumerate(keep)])
        values = {"point_labels": -1, "multimask": self.engine.use_multimask(False, 0)}  # tracking: no prompt
        for name, value in values.items():
            new[name].mirror[...] = value
        for name in ("point_coords", "point_labels", "mask_input", "has_mask_input", "multimask"):
            self.executor.allocator.upload(new[name])
        self._objs = new
        if old is not None:
            self.executor.release(old)  # after the copies: frees it and drops graphs captured with it

    def remove_object(self, obj_id: int) -> list[int]:
        """Stop tracking ``obj_id`` and forget its prompts and results; returns the remaining ids."""
        self._require_frame()
        P.check_obj_id(obj_id)
        if obj_id not in self._ids:
            raise Sam2rtError(f"unknown obj_id {obj_id!r}; tracked object ids: {self._ids}")
        b = self._ids.index(obj_id)
        if len(self._ids) == 1:
            self.reset()
            return []
        keep = [i for i in range(len(self._ids)) if i != b]
        self._resize(keep, len(keep))
        self.bank.remove_object(b)
        for lst in (self._ids, self._added_at, self._cond_now, self._points):
            del lst[b]
        self._masks, self._scores = self._masks[keep], self._scores[keep]
        return self.obj_ids

    def reset(self) -> None:
        """Remove all objects, prompts and results; the stream and its current frame stay."""
        self._clear_objects()

    reset_state = reset

    def close(self) -> None:
        """Free every buffer now and close the executor (on TensorRT: its graphs, contexts' scratch, CUDA
        stream). The tracker is done; open a new stream for more. Calling it again does nothing."""
        if self._closed:
            return
        self._clear_objects()
        for bufs in (self._frame_bufs, self._prompt.bufs):
            if bufs is not None:
                self.executor.release(bufs)
        self._frame_bufs, self._prompt.bufs, self._t = None, None, -1
        self.executor.close()
        self._closed = True

    def __enter__(self) -> "StreamTracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- helpers -----------------------------------------------------------------------------------
    def _require_frame(self) -> None:
        self._require_open()
        if self._t < 0:
            raise Sam2rtError("no frame yet; call load_first_frame(frame) before prompting or tracking")

    def _require_open(self) -> None:
        if self._closed:
            raise Sam2rtError("this stream is closed (close() freed its buffers); open a new one with "
                              "model.stream() or StreamTracker(...)")

    def _check_current(self, frame_idx: object) -> None:
        current = self.frame_idx
        if not isinstance(frame_idx, numbers.Integral) or isinstance(frame_idx, bool) or frame_idx != current:
            raise Sam2rtError(f"frame_idx {frame_idx!r}: a stream takes prompts only on its current frame "
                              f"{current} (the latest frame given to load_first_frame/track); earlier frames "
                              "are gone")

    def _to_rgb(self, frame: object, size: tuple[int, int] | None) -> np.ndarray:
        """Validate an (H, W, 3) uint8 frame -> a contiguous RGB array."""
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            got = f"{type(frame).__name__} {getattr(frame, 'shape', '')} {getattr(frame, 'dtype', '')}"
            order = "BGR" if self.bgr else "RGB"
            raise Sam2rtError(f"a frame must be an (H, W, 3) uint8 {order} numpy array, got {got}; convert it "
                              "with np.asarray(frame, dtype=np.uint8)")
        if frame.shape[0] == 0 or frame.shape[1] == 0:
            raise Sam2rtError(f"the frame is empty ({frame.shape}); check the capture")
        if size is not None and frame.shape[:2] != size:
            raise Sam2rtError(f"the frame is {frame.shape[1]}x{frame.shape[0]} but the stream is "
                              f"{size[1]}x{size[0]}; resize it, or call load_first_frame to start a new stream")
        return np.ascontiguousarray(frame)  # BGR stays BGR: preprocessing swaps channels on its small image


__all__ = ["StreamTracker", "TrackResult"]
