"""``VideoPredictor``: a drop-in for the official ``SAM2VideoPredictor`` on ONNX Runtime, without torch.

Same methods, arguments and return shapes; masks come back as numpy ``(K, 1, H, W)`` float32 logits at
video resolution. Frames are read lazily and image features are kept in a bounded LRU cache, so the
video is never held in memory. All objects of a frame go through each graph in one batched call.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from sam2rt import contract as C
from sam2rt.errors import Sam2rtError
from sam2rt.runtime import prompts as P
from sam2rt.runtime.bank import ObjectOutputs, SelectionRules, bf16_bits
from sam2rt.runtime.engine import Engine, Features
from sam2rt.runtime.frames import open_frames
from sam2rt.runtime.imageops import mask_prompt_to_input
from sam2rt.runtime.transaction import check_new_object, rolled_back_on_error

State = dict[str, Any]


def _track_num_frames(state: State) -> int | None:
    """The ``num_frames`` that memory selection sees: the video length, or None for an unbounded stream
    (``sam2rt.runtime.stream``), where the pointer window is the model's full ``max_obj_ptrs``."""
    return state.get("track_num_frames", state["num_frames"])


class VideoPredictor:
    """Track objects through a video from clicks, boxes or masks (official ``SAM2VideoPredictor`` API).

    model_dir: an exported model (``sam2rt export``). backend: "ort", "ort-gpu" or "trt" (engines from
    ``sam2rt build``, read from ``engine_dir``, default MODEL_DIR/engines). fill_hole_area: None takes the
    model's setting (8); 0 disables it (the official predictor skips it on CPU, where its CUDA kernel is
    missing). feature_cache: frames whose image features are kept.
    """

    def __init__(self, model_dir: str | Path, backend: str = "ort", threads: int = 0,
                 fill_hole_area: int | None = None, feature_cache: int = 8, preprocess: str = "official",
                 progress: bool = True, engine_dir: str | Path | None = None) -> None:
        self.engine = Engine(model_dir, backend=backend, threads=threads, preprocess=preprocess, engine_dir=engine_dir)
        self.rules = SelectionRules.from_tracking(self.engine.tracking)
        self.fill_hole_area = self.engine.tracking["fill_hole_area"] if fill_hole_area is None else fill_hole_area
        self.feature_cache = max(1, feature_cache)
        self.progress = progress
        self.image_size = self.engine.size

    # ---- state -------------------------------------------------------------------------------------
    def init_state(self, video_path: Any, **_official_options: Any) -> State:
        """Open a JPEG folder, a video file or a list of HxWx3 uint8 RGB frames.

        Official options such as ``offload_video_to_cpu`` are accepted and ignored (frames are lazy).
        """
        frames = open_frames(video_path)
        state: State = {"frames": frames, "num_frames": len(frames), "video_height": frames.height,
                        "video_width": frames.width, "features": OrderedDict(), "track_num_frames": len(frames)}
        self._clear_objects(state)
        self._features(state, 0)
        return state

    def _clear_objects(self, state: State) -> None:
        state["obj_id_to_idx"] = OrderedDict()
        state["obj_idx_to_id"] = OrderedDict()
        state["obj_ids"] = []
        for key in ("point_inputs_per_obj", "mask_inputs_per_obj", "output_dict_per_obj",
                    "temp_output_dict_per_obj", "frames_tracked_per_obj"):
            state[key] = {}

    def reset_state(self, state: State) -> None:
        """Remove all objects, prompts and results (the video stays open)."""
        self._clear_objects(state)

    def _features(self, state: State, frame_idx: int) -> Features:
        cache: OrderedDict = state["features"]
        if frame_idx in cache:
            cache.move_to_end(frame_idx)
            return cache[frame_idx]
        feats = self.engine.features(state["frames"][frame_idx])
        cache[frame_idx] = feats
        while len(cache) > self.feature_cache:
            cache.popitem(last=False)
        return feats

    def _obj_idx(self, state: State, obj_id: int) -> int:
        idx = state["obj_id_to_idx"].get(obj_id)
        if idx is not None:
            return idx
        idx = len(state["obj_id_to_idx"])
        state["obj_id_to_idx"][obj_id] = idx
        state["obj_idx_to_id"][idx] = obj_id
        state["obj_ids"] = list(state["obj_id_to_idx"])
        for key in ("point_inputs_per_obj", "mask_inputs_per_obj", "frames_tracked_per_obj"):
            state[key][idx] = {}
        state["output_dict_per_obj"][idx] = ObjectOutputs()
        state["temp_output_dict_per_obj"][idx] = ObjectOutputs()
        return idx

    # ---- prompts -----------------------------------------------------------------------------------
    def add_new_points_or_box(self, inference_state: State, frame_idx: int, obj_id: int, points=None, labels=None,
                              clear_old_points: bool = True, normalize_coords: bool = True, box=None):
        """Add clicks and/or a box on a frame; returns ``(frame_idx, obj_ids, masks (K,1,H,W))``."""
        state = inference_state
        P.check_frame_idx(frame_idx, state["num_frames"])
        P.check_obj_id(obj_id)
        pts, lbl = P.points_and_labels(points, labels, box, clear_old_points, normalize_coords,
                                       state["video_width"], state["video_height"])
        scale = np.array([state["video_width"], state["video_height"]], np.float32) if normalize_coords else 1.0
        pts = (pts / scale * self.image_size).astype(np.float32)
        known = state["obj_id_to_idx"].get(obj_id)
        old = state["point_inputs_per_obj"][known].get(frame_idx) if known is not None and not clear_old_points else None
        if old is not None:
            pts, lbl = np.concatenate([old[0], pts]), np.concatenate([old[1], lbl])
        P.check_point_count(lbl, self.engine.manifest.bank.max_points)
        check_new_object(state, obj_id, self.engine.manifest.bank.max_objects)
        self._features(state, frame_idx)  # decodes the frame: a frame that cannot be read fails before any change
        with rolled_back_on_error(state, obj_id, frame_idx):
            return self._add_points(state, frame_idx, obj_id, pts, lbl)

    add_new_points = add_new_points_or_box

    def _add_points(self, state: State, frame_idx: int, obj_id: int, pts: np.ndarray, lbl: np.ndarray):
        """``add_new_points_or_box`` once its arguments are checked: (N,2) model pixels, (N,) labels."""
        obj_idx = self._obj_idx(state, obj_id)
        state["point_inputs_per_obj"][obj_idx][frame_idx] = (pts, lbl)
        state["mask_inputs_per_obj"][obj_idx].pop(frame_idx, None)
        is_init, reverse, is_cond = self._frame_role(state, obj_idx, frame_idx)
        prev = self._previous_logits(state, obj_idx, frame_idx, is_cond)
        feats = self._features(state, frame_idx)
        bank = self.engine.bank(1)
        if is_init:
            bank.clear(0)
        else:
            bank.fill(0, frame_idx, state["output_dict_per_obj"][obj_idx], self.rules, _track_num_frames(state),
                      reverse)
        head = self.engine.track(feats, bank, pts[None], lbl[None], prev,
                                 self.engine.use_multimask(is_init, len(lbl)))
        out = self.engine.frame_outputs(head, None, self.fill_hole_area)[0]
        self._store_temp(state, obj_idx, frame_idx, is_cond, out)
        return frame_idx, state["obj_ids"], self._consolidate(state, frame_idx, is_cond)

    def add_new_mask(self, inference_state: State, frame_idx: int, obj_id: int, mask):
        """Add a mask prompt (H,W) bool on a frame; returns ``(frame_idx, obj_ids, masks)``."""
        state = inference_state
        P.check_frame_idx(frame_idx, state["num_frames"])
        P.check_obj_id(obj_id)
        mask = P.check_mask(mask)
        mask_input = mask_prompt_to_input(mask, self.image_size)
        check_new_object(state, obj_id, self.engine.manifest.bank.max_objects)
        self._features(state, frame_idx)  # decodes the frame: a frame that cannot be read fails before any change
        with rolled_back_on_error(state, obj_id, frame_idx):
            return self._add_mask(state, frame_idx, obj_id, mask_input)

    def _add_mask(self, state: State, frame_idx: int, obj_id: int, mask_input: np.ndarray):
        """``add_new_mask`` once its arguments are checked: mask_input (1, 1, 4h, 4h) float32."""
        obj_idx = self._obj_idx(state, obj_id)
        state["mask_inputs_per_obj"][obj_idx][frame_idx] = mask_input
        state["point_inputs_per_obj"][obj_idx].pop(frame_idx, None)
        _, _, is_cond = self._frame_role(state, obj_idx, frame_idx)
        head = self.engine.mask_as_output(self._features(state, frame_idx), mask_input)
        out = self.engine.frame_outputs(head, None, self.fill_hole_area)[0]
        self._store_temp(state, obj_idx, frame_idx, is_cond, out)
        return frame_idx, state["obj_ids"], self._consolidate(state, frame_idx, is_cond)

    def _frame_role(self, state: State, obj_idx: int, frame_idx: int) -> tuple[bool, bool, bool]:
        tracked = state["frames_tracked_per_obj"][obj_idx]
        is_init = frame_idx not in tracked
        reverse = False if is_init else tracked[frame_idx]["reverse"]
        is_cond = is_init or self.engine.tracking["add_all_frames_to_correct_as_cond"]
        return is_init, reverse, is_cond

    def _previous_logits(self, state: State, obj_idx: int, frame_idx: int, is_cond: bool) -> np.ndarray | None:
        """Refinement clicks reuse the frame's previous mask logits (clamped), as the official code does."""
        out = self._frame_output(state, obj_idx, frame_idx, is_cond)
        return None if out is None else np.clip(out.pred_masks, -32.0, 32.0)

    def _frame_output(self, state: State, obj_idx: int, frame_idx: int, is_cond: bool):
        """An object's latest result on a frame: the new prompt's, else the tracked one (official lookup order)."""
        temp, done = state["temp_output_dict_per_obj"][obj_idx], state["output_dict_per_obj"][obj_idx]
        out = (temp.cond if is_cond else temp.non_cond).get(frame_idx)
        return out or done.cond.get(frame_idx) or done.non_cond.get(frame_idx)

    def _store_temp(self, state: State, obj_idx: int, frame_idx: int, is_cond: bool, out) -> None:
        temp = state["temp_output_dict_per_obj"][obj_idx]
        (temp.cond if is_cond else temp.non_cond)[frame_idx] = out

    def _consolidate(self, state: State, frame_idx: int, is_cond: bool) -> np.ndarray:
        """Every object's mask on ``frame_idx`` at video resolution (NO_OBJ_SCORE where it has none)."""
        H, W = state["video_height"], state["video_width"]
        masks = np.full((len(state["obj_ids"]), 1, H, W), C.NO_OBJ_SCORE, np.float32)
        for idx in range(len(state["obj_ids"])):
            out = self._frame_output(state, idx, frame_idx, is_cond)
            if out is not None:
                masks[idx] = self.engine.to_video_res(out.pred_masks, H, W)[0]
        return masks

    # ---- propagation -------------------------------------------------------------------------------
    def propagate_in_video_preflight(self, inference_state: State) -> None:
        """Encode the memories of newly prompted frames and move them into the bank."""
        state = inference_state
        if not state["obj_ids"]:
            raise Sam2rtError("no object has a prompt yet; add points, a box or a mask first")
        for idx in range(len(state["obj_ids"])):
            temp, done = state["temp_output_dict_per_obj"][idx], state["output_dict_per_obj"][idx]
            for src, dst in ((temp.non_cond, done.non_cond), (temp.cond, done.cond)):
                for frame_idx, out in src.items():
                    if out.memory is None:
                        feats = self._features(state, frame_idx)
                        mem = self.engine.encode_memory(feats, out.pred_masks, True, out.object_score_logits)
                        out.memory = bf16_bits(mem[0])
                    dst[frame_idx] = out
                src.clear()
            if not done.cond:
                raise Sam2rtError(f"object id {state['obj_idx_to_id'][idx]} has no prompt; add one or remove it")
            for frame_idx in done.cond:
                done.non_cond.pop(frame_idx, None)

    def propagate_in_video(self, inference_state: State, start_frame_idx: int | None = None,
                           max_frame_num_to_track: int | None = None,
                           reverse: bool = False) -> Iterator[tuple[int, list[int], np.ndarray]]:
        """Yield ``(frame_idx, obj_ids, masks (K,1,H,W))`` for every frame in processing order."""
        state = inference_state
        if start_frame_idx is not None:  # checked before the preflight changes anything
            P.check_frame_idx(start_frame_idx, state["num_frames"])
        P.check_frame_limit(max_frame_num_to_track)
        self.propagate_in_video_preflight(state)
        num_frames, K = state["num_frames"], len(state["obj_ids"])
        if start_frame_idx is None:
            start_frame_idx = min(t for o in state["output_dict_per_obj"].values() for t in o.cond)
        limit = num_frames if max_frame_num_to_track is None else int(max_frame_num_to_track)
        if reverse:
            end = max(start_frame_idx - limit, 0)
            order = range(start_frame_idx, end - 1, -1) if start_frame_idx > 0 else range(0)
        else:
            end = min(start_frame_idx + limit, num_frames - 1)
            order = range(start_frame_idx, end + 1)
        for frame_idx in tqdm(order, desc="propagate in video", disable=not self.progress):
            masks = self._track_frame(state, frame_idx, K, reverse)
            H, W = state["video_height"], state["video_width"]
            yield frame_idx, state["obj_ids"], self.engine.to_video_res(masks, H, W)

    def _track_frame(self, state: State, frame_idx: int, K: int, reverse: bool) -> np.ndarray:
        outputs = [state["output_dict_per_obj"][i] for i in range(K)]
        todo = [i for i in range(K) if frame_idx not in outputs[i].cond]
        results = {i: outputs[i].cond[frame_idx] for i in range(K) if i not in todo}
        if todo:
            feats = self._features(state, frame_idx)
            bank = self.engine.bank(len(todo))
            for b, i in enumerate(todo):
                bank.fill(b, frame_idx, outputs[i], self.rules, _track_num_frames(state), reverse)
            head = self.engine.track(feats, bank, None, None, None, self.engine.use_multimask(False, 0))
            mem = self.engine.encode_memory(feats, head.low_res_masks, False, head.object_score_logits)
            for i, out in zip(todo, self.engine.frame_outputs(head, mem, self.fill_hole_area)):
                outputs[i].non_cond[frame_idx] = out
                results[i] = out
        for i in range(K):
            state["frames_tracked_per_obj"][i][frame_idx] = {"reverse": reverse}
        return np.concatenate([results[i].pred_masks for i in range(K)])

    # ---- editing -----------------------------------------------------------------------------------
    def clear_all_prompts_in_frame(self, inference_state: State, frame_idx: int, obj_id: int,
                                   need_output: bool = True):
        """Remove an object's prompts on a frame (its result there becomes an ordinary tracked frame)."""
        state = inference_state
        P.check_frame_idx(frame_idx, state["num_frames"])
        P.check_obj_id(obj_id)
        if obj_id not in state["obj_id_to_idx"]:
            raise Sam2rtError(f"unknown obj_id {obj_id!r}; known object ids: {state['obj_ids']}")
        idx = state["obj_id_to_idx"][obj_id]
        state["point_inputs_per_obj"][idx].pop(frame_idx, None)
        state["mask_inputs_per_obj"][idx].pop(frame_idx, None)
        temp = state["temp_output_dict_per_obj"]
        temp[idx].cond.pop(frame_idx, None)
        temp[idx].non_cond.pop(frame_idx, None)
        done = state["output_dict_per_obj"][idx]
        out = done.cond.pop(frame_idx, None)
        if out is not None:
            done.non_cond[frame_idx] = out
            state["frames_tracked_per_obj"][idx].pop(frame_idx, None)
        if not need_output:
            return None
        is_cond = any(frame_idx in t.cond for t in temp.values())
        return frame_idx, state["obj_ids"], self._consolidate(state, frame_idx, is_cond)

    def remove_object(self, inference_state: State, obj_id: int, strict: bool = False, need_output: bool = True):
        """Remove an object; returns ``(obj_ids, [(frame_idx, masks), ...])`` for its prompted frames."""
        state = inference_state
        P.check_obj_id(obj_id)
        old_idx = state["obj_id_to_idx"].get(obj_id)
        if old_idx is None:
            if strict:
                raise Sam2rtError(f"unknown obj_id {obj_id!r}; known object ids: {state['obj_ids']}")
            return state["obj_ids"], []
        if len(state["obj_ids"]) == 1:
            self.reset_state(state)
            return state["obj_ids"], []
        frames = set(state["point_inputs_per_obj"][old_idx]) | set(state["mask_inputs_per_obj"][old_idx])
        for frame_idx in frames:
            self.clear_all_prompts_in_frame(state, frame_idx, obj_id, need_output=False)
        keep = [i for i in range(len(state["obj_ids"])) if i != old_idx]
        ids = [state["obj_ids"][i] for i in keep]
        for key in ("point_inputs_per_obj", "mask_inputs_per_obj", "output_dict_per_obj",
                    "temp_output_dict_per_obj", "frames_tracked_per_obj"):
            state[key] = {new: state[key][old] for new, old in enumerate(keep)}
        state["obj_id_to_idx"] = OrderedDict((o, i) for i, o in enumerate(ids))
        state["obj_idx_to_id"] = OrderedDict((i, o) for i, o in enumerate(ids))
        state["obj_ids"] = ids
        updated = []
        if need_output:
            for frame_idx in frames:
                is_cond = any(frame_idx in t.cond for t in state["temp_output_dict_per_obj"].values())
                updated.append((frame_idx, self._consolidate(state, frame_idx, is_cond)))
        return state["obj_ids"], updated

