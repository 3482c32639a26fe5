"""SAMURAI's own predictor on CPU, one object per run: the parity reference (run in .venv-samurai).

Usage (in the reference venv, .venv-samurai): python samurai_reference.py JOB.json OUT.npz. Never imported
by sam2rt (it imports SAMURAI's fork of sam2 and torch); run by tests/samurai and ``sam2rt verify --memory
samurai``. JOB: {"checkpoint", "image_size", "frames" (JPEG folder), "num_frames", "prompts": [{"frame", "points", "labels"}, ...] (one object, id 1; the first prompt starts it),
"config"}. Tracks forward from the first prompt, incrementally across later prompts the way a live stream
sees them (propagate up to the prompt frame, prompt, propagate from the next frame), and writes per frame:
``masks`` (T, H, W) packed bits of the video-resolution mask, ``memory`` (T, 7) the frames whose memory
attention read (-1 padded), ``iou`` (T,) the kept candidate's predicted IoU.

Harness patches, none in SAMURAI's logic (docs/tracker.md):
- device "cpu" (the factory defaults to CUDA); hole filling off (its CUDA extension is not built; our side
  runs with fill_hole_area=0 as well).
- a prompt on a frame after tracking started makes a consolidated output, and the per-object copies of every
  output, without "best_iou_score"/"kf_score", which SAMURAI's memory scan then reads (KeyError): the harness
  copies them from the prompt's own output and into the per-object copies (one object: the same values).
- which memories attention read is recorded by wrapping the stored outputs in a dict that notes reads of
  "maskmem_features" (behaviour unchanged).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch


class _Recorded(dict):
    """A frame output that notes when memory attention reads its memory."""

    def __init__(self, frame: int, out: dict, log: list) -> None:
        super().__init__(out)
        self.frame, self.log = frame, log

    def __getitem__(self, key):
        if key == "maskmem_features":
            self.log.append(self.frame)
        return super().__getitem__(key)


def main(job_path: str, out_path: str) -> None:
    from sam2.build_sam import build_sam2_video_predictor

    job = json.load(open(job_path))
    torch.manual_seed(0)
    predictor = build_sam2_video_predictor(job["config"], job["checkpoint"], device="cpu",
                                           hydra_overrides_extra=[f"++model.image_size={job['image_size']}",
                                                                  *job.get("overrides", [])])
    predictor.fill_hole_area = 0
    reads: list[int] = []
    original = predictor._prepare_memory_conditioned_features

    def recording(*args, **kwargs):
        out_dict = kwargs["output_dict"]
        for key in ("cond_frame_outputs", "non_cond_frame_outputs"):
            for t, out in list(out_dict[key].items()):
                out_dict[key][t] = _Recorded(t, out, reads)
        return original(*args, **kwargs)

    predictor._prepare_memory_conditioned_features = recording
    consolidate = predictor._consolidate_temp_output_across_obj

    def with_scores(state, frame_idx, is_cond, run_mem_encoder, **kwargs):
        out = consolidate(state, frame_idx, is_cond, run_mem_encoder, **kwargs)
        temp = state["temp_output_dict_per_obj"][0]["cond_frame_outputs" if is_cond else "non_cond_frame_outputs"]
        if frame_idx in temp:
            for key in ("best_iou_score", "kf_score"):
                out[key] = temp[frame_idx].get(key)
        return out

    predictor._consolidate_temp_output_across_obj = with_scores
    add_per_object = predictor._add_output_per_object

    def per_object_with_scores(state, frame_idx, current_out, storage_key):
        add_per_object(state, frame_idx, current_out, storage_key)
        for key in ("best_iou_score", "kf_score"):
            if key in current_out:
                state["output_dict_per_obj"][0][storage_key][frame_idx][key] = current_out[key]

    predictor._add_output_per_object = per_object_with_scores
    T = job["num_frames"]
    masks, memory, ious = None, np.full((T, 7), -1, np.int32), np.full(T, np.nan, np.float32)
    with torch.inference_mode():
        state = predictor.init_state(job["frames"])
        prompts = sorted(job["prompts"], key=lambda p: p["frame"])
        ends = [p["frame"] for p in prompts[1:]] + [T - 1]
        start = prompts[0]["frame"]
        for prompt, end in zip(prompts, ends):
            _, _, logits = predictor.add_new_points_or_box(state, prompt["frame"], 1,
                                                           points=np.array(prompt["points"], np.float32),
                                                           labels=np.array(prompt["labels"], np.int32))
            if masks is None:
                masks = np.zeros((T, *logits.shape[-2:]), bool)
            masks[prompt["frame"]] = (logits[0, 0] > 0).numpy()
            reads.clear()  # the prompt's own memory reads
            first = prompt["frame"] + (1 if prompt is not prompts[0] else 0)
            if first > end:
                continue
            for frame_idx, _, logits in predictor.propagate_in_video(state, start_frame_idx=first,
                                                                     max_frame_num_to_track=end - first):
                masks[frame_idx] = (logits[0, 0] > 0).numpy()
                read = sorted(set(reads))
                memory[frame_idx, :len(read)] = read
                reads.clear()
                out = state["output_dict"]["non_cond_frame_outputs"].get(frame_idx)
                if out is not None and torch.is_tensor(out.get("best_iou_score")):
                    ious[frame_idx] = float(out["best_iou_score"])
        del start
    np.savez_compressed(out_path, masks=np.packbits(masks, axis=-1), shape=np.array(masks.shape), memory=memory,
                        iou=ious)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
