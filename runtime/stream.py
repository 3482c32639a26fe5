"""``StreamTracker``: SAM 2 on a live camera, one frame at a time, in constant memory (no torch).

The API follows the popular "camera predictor" idiom::

    tracker = StreamTracker("model_dir")
    tracker.load_first_frame(frame)                      # frame 0
    tracker.add_new_prompt(0, obj_id=1, points=[[x, y]], labels=[1])
    while True:
        obj_ids, mask_logits = tracker.track(next_frame)  # (K, 1, H, W) float32 logits

Results equal the official ``SAM2VideoPredictor`` propagating forward through the same frames with the same
prompts (run on a video of 16 frames or more, so that its object-pointer window is full, as a stream's is). The tracking logic is
the ``VideoPredictor``'s, run over a frame source that grows by one frame per ``track`` call and holds only
the latest frame. After each frame, everything memory selection can no longer read is dropped, so a stream
of any length keeps per object the current frame's result and the ``max(num_maskmem - 1, max_obj_ptrs - 1)``
= 15 before it, plus the conditioning frames that can still be selected; and one frame's image features.
"""

from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np

from sam2rt.errors import Sam2rtError
from sam2rt.runtime.bank import attended_cond_frames
from sam2rt.runtime.frames import FrameSource
from sam2rt.runtime.predictor import State, VideoPredictor
from sam2rt.runtime.prompts import check_obj_id


class LiveFrames(FrameSource):
    """A growing frame sequence that holds only its latest (H, W, 3) uint8 RGB frame."""

    def __init__(self, first: np.ndarray) -> None:
        super().__init__(cache_size=0)
        self.name = "stream"
        self.height, self.width = first.shape[:2]
        self._latest = first
        self._count = 1

    def __len__(self) -> int:
        return self._count

    def _read(self, index: int) -> np.ndarray:
        if index != self._count - 1:
            raise Sam2rtError(f"frame {index} of the stream is gone; only the latest frame "
                              f"({self._count - 1}) is kept")
        return self._latest

    @property
    def latest(self) -> np.ndarray:
        """The current frame, (H, W, 3) uint8 RGB."""
        return self._latest

    def append(self, frame: np.ndarray) -> None:
        """Make ``frame`` (H, W, 3) uint8 RGB the next frame; the previous one is released."""
        self._latest = frame
        self._count += 1


class StreamTracker:
    """Track objects through a live stream of frames (camera-predictor API on ONNX Runtime).

    model_dir: an exported model (``sam2rt export``). backend: "ort", "ort-gpu" or "trt" (engines in
    ``engine_dir``, default MODEL_DIR/engines). threads: 0 lets the backend choose.
    fill_hole_area: None takes the model's setting; 0 disables it (as the official predictor on CPU).
    bgr: frames arrive in OpenCV's BGR order and are converted. preprocess: "official" (bit-exact
    resize) or "fast" (OpenCV resize).
    """

    def __init__(self, model_dir: str | Path, backend: str = "ort", threads: int = 0,
                 fill_hole_area: int | None = None, bgr: bool = False, preprocess: str = "official",
                 engine_dir: str | Path | None = None) -> None:
        self.predictor = VideoPredictor(model_dir, backend=backend, threads=threads, fill_hole_area=fill_hole_area,
                                        feature_cache=1, preprocess=preprocess, progress=False, engine_dir=engine_dir)
        self.engine = self.predictor.engine
        self.bgr = bgr
        rules = self.predictor.rules
        # frames back that memory (with its stride) or object pointers can reach
        self.horizon = max((rules.num_maskmem - 1) * rules.stride, rules.max_obj_ptrs - 1)
        self.max_cond = attended_cond_frames(rules, self.engine.manifest.bank)
        self._frames: LiveFrames | None = None
        self._state: State | None = None

    # ---- introspection -----------------------------------------------------------------------------
    @property
    def frame_idx(self) -> int:
        """Index of the current (latest) frame; -1 before ``load_first_frame``."""
        return -1 if self._frames is None else len(self._frames) - 1

    @property
    def obj_ids(self) -> list[int]:
        """The tracked object ids, in output order."""
        return [] if self._state is None else list(self._state["obj_ids"])

    def stored_outputs(self) -> dict[int, int]:
        """Per object id, how many per-frame results (FrameOutputs) the tracker holds."""
        if self._state is None:
            return {}
        counts = {}
        for obj_id, idx in self._state["obj_id_to_idx"].items():
            done, temp = self._state["output_dict_per_obj"][idx], self._state["temp_output_dict_per_obj"][idx]
            counts[obj_id] = len(done.cond) + len(done.non_cond) + len(temp.cond) + len(temp.non_cond)
        return counts

    def stored_bytes(self) -> int:
        """Bytes of the arrays the tracker holds: results, prompts, image features and the latest frame."""
        if self._state is None:
            return 0
        state, total = self._state, self._frames.latest.nbytes
        for feats in state["features"].values():
            total += feats.vision_feat.nbytes + feats.feat_s0.nbytes + feats.feat_s1.nbytes
        for key in ("output_dict_per_obj", "temp_output_dict_per_obj"):
            for outputs in state[key].values():
                for out in (*outputs.cond.values(), *outputs.non_cond.values()):
                    total += out.pred_masks.nbytes + out.obj_ptr.nbytes + out.object_score_logits.nbytes
                    total += 0 if out.memory is None else out.memory.nbytes
        for per_frame in state["point_inputs_per_obj"].values():
            total += sum(p.nbytes + lbl.nbytes for p, lbl in per_frame.values())
        for per_frame in state["mask_inputs_per_obj"].values():
            total += sum(m.nbytes for m in per_frame.values())
        return total

    # ---- frames ------------------------------------------------------------------------------------
    def load_first_frame(self, frame: np.ndarray) -> None:
        """Forget everything (objects, prompts, results) and make ``frame`` frame 0.

        frame: (H, W, 3) uint8, RGB (BGR with ``bgr=True``).
        """
        frames = LiveFrames(self._to_rgb(frame, None))
        state = self.predictor.init_state(frames)  # computes frame 0's image features
        state["track_num_frames"] = None  # unbounded stream: the full object-pointer window
        self._frames, self._state = frames, state

    def track(self, frame: np.ndarray) -> tuple[list[int], np.ndarray]:
        """Append ``frame`` to the stream and track every object on it (one batched call).

        frame: (H, W, 3) uint8 of the first frame's size. Returns ``(obj_ids, mask_logits)``, the logits
        (K, 1, H, W) float32 at frame resolution (> 0 is the object).
        """
        state = self._require_state()
        rgb = self._to_rgb(frame, (self._frames.height, self._frames.width))
        if not state["obj_ids"]:
            raise Sam2rtError("no object to track; add one with add_new_prompt(...) on the current frame first")
        # memories of prompts on the current frame, from its cached features, before the frame is replaced
        self.predictor.propagate_in_video_preflight(state)
        self._frames.append(rgb)
        state["num_frames"] = len(self._frames)
        new_idx = state["num_frames"] - 1
        _, obj_ids, masks = next(self.predictor.propagate_in_video(state, start_frame_idx=new_idx,
                                                                   max_frame_num_to_track=0))
        self._forget_unreachable(state, new_idx)
        return list(obj_ids), masks

    # ---- prompts -----------------------------------------------------------------------------------
    def add_new_prompt(self, frame_idx: int, obj_id: int, points=None, labels=None, bbox=None, mask=None,
                       clear_old_points: bool = True,
                       normalize_coords: bool = True) -> tuple[int, list[int], np.ndarray]:
        """Prompt an object (new or tracked) on the current frame with clicks, a box or a mask.

        points (N, 2) pixel x, y with labels (N,) 1 = positive / 0 = negative; bbox (4,) x0, y0, x1, y1;
        mask (H, W) bool (alone). Returns ``(frame_idx, obj_ids, mask_logits (K, 1, H, W) float32)`` for
        every object on this frame.
        """
        state = self._require_state()
        self._check_current(frame_idx)
        if mask is not None:
            if points is not None or labels is not None or bbox is not None:
                raise Sam2rtError("give either a mask or points/labels/bbox in one add_new_prompt call, not both")
            idx, ids, masks = self.predictor.add_new_mask(state, frame_idx, obj_id, mask)
        else:
            idx, ids, masks = self.predictor.add_new_points_or_box(
                state, frame_idx, obj_id, points=points, labels=labels, clear_old_points=clear_old_points,
                normalize_coords=normalize_coords, box=bbox)
        return idx, list(ids), masks

    def remove_object(self, obj_id: int) -> list[int]:
        """Stop tracking ``obj_id`` and forget its prompts and results; returns the remaining ids."""
        state = self._require_state()
        check_obj_id(obj_id)  # an unhashable id would raise TypeError below
        if obj_id not in state["obj_id_to_idx"]:
            raise Sam2rtError(f"unknown obj_id {obj_id!r}; tracked object ids: {state['obj_ids']}")
        ids, _ = self.predictor.remove_object(state, obj_id, strict=True, need_output=False)
        return list(ids)

    def reset(self) -> None:
        """Remove all objects, prompts and results; the stream and its current frame stay."""
        if self._state is not None:
            self.predictor.reset_state(self._state)

    reset_state = reset

    # ---- helpers -----------------------------------------------------------------------------------
    def _require_state(self) -> State:
        if self._state is None:
            raise Sam2rtError("no frame yet; call load_first_frame(frame) before prompting or tracking")
        return self._state

    def _check_current(self, frame_idx: object) -> None:
        current = self.frame_idx
        if not isinstance(frame_idx, numbers.Integral) or isinstance(frame_idx, bool) or frame_idx != current:
            raise Sam2rtError(f"frame_idx {frame_idx!r}: a stream takes prompts only on its current frame "
                              f"{current} (the latest frame given to load_first_frame/track); earlier frames "
                              "are gone")

    def _to_rgb(self, frame: object, size: tuple[int, int] | None) -> np.ndarray:
        """Validate an (H, W, 3) uint8 frame -> a private contiguous RGB copy."""
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
        return np.array(frame[:, :, ::-1] if self.bgr else frame, order="C")  # a private copy

    def _forget_unreachable(self, state: State, frame_idx: int) -> None:
        """Drop what prompts on ``frame_idx`` and tracking later frames can never select (constant memory).

        A correction on the current frame still reads the ``horizon`` frames before it, so those are kept.
        """
        oldest = frame_idx - self.horizon
        for idx, done in state["output_dict_per_obj"].items():
            for t in [t for t in done.non_cond if t < oldest]:
                del done.non_cond[t]
            newest_cond = set(sorted(done.cond)[-self.max_cond:])  # forward: the closest are the newest
            for t in [t for t in done.cond if t < oldest and t not in newest_cond]:
                del done.cond[t]
            tracked = state["frames_tracked_per_obj"][idx]
            state["frames_tracked_per_obj"][idx] = {t: v for t, v in tracked.items() if t == frame_idx}
            for key in ("point_inputs_per_obj", "mask_inputs_per_obj"):  # prompts are only ever on the current frame
                per_frame = state[key][idx]
                state[key][idx] = {t: v for t, v in per_frame.items() if t >= frame_idx}
