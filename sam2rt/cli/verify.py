"""``sam2rt verify``: our predictor and the official one side by side, per-frame per-object mask IoU.

Exit codes: 0 when the mean IoU reaches ``--threshold``, 1 when it does not, 2 for bad input.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from sam2rt.cli.random_weights import say_random_weights
from sam2rt.errors import Sam2rtError

# Default minimum mean IoU per precision: exact parity for FP32, the accuracy bars for FP16 / INT8.
THRESHOLDS = {"fp32": 0.999, "fp16": 0.99, "int8": 0.97, "int8-cpu": 0.97}


def _cmd_verify(args: argparse.Namespace) -> int:
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:  # also refuses nan
        raise Sam2rtError(f"--threshold {args.threshold} is not a mean IoU; pass a number from 0 to 1 (e.g. 0.99)")
    if (args.checkpoint is None) == (not args.random_weights):
        raise Sam2rtError("pass exactly one of --checkpoint PATH or --random-weights [--seed N] (the export's weights)")
    import torch

    from sam2rt.benchmarks.parity import compare, jpeg_folder, official_predictor, run_steps, steps_from_prompts
    from sam2rt.manifest import load_manifest
    from sam2rt.prompts_file import load_prompts
    from sam2rt.runtime.predictor import VideoPredictor

    manifest = load_manifest(args.model)
    threshold = THRESHOLDS.get(manifest.precision, 0.999) if args.threshold is None else args.threshold
    prompts = load_prompts(args.prompts)
    if not args.video.exists():
        raise Sam2rtError(f"video {args.video} does not exist; pass a JPEG folder or a video file")
    reference = official_predictor(manifest, args.checkpoint, args.seed if args.random_weights else None)
    ours = VideoPredictor(args.model, backend=args.backend, threads=args.threads,
                          fill_hole_area=reference.fill_hole_area)
    with tempfile.TemporaryDirectory() as tmp:
        video = str(jpeg_folder(args.video, args.frames, Path(tmp)))
        steps = steps_from_prompts(prompts)
        report = compare(run_steps(reference, video, steps, frame_hook=torch.inference_mode),
                         run_steps(ours, video, steps))
    print(f"{'step':<14} {'frame':>5} {'obj_id':>6} {'IoU':>9}")
    for step, frame, obj, iou in report.rows:
        print(f"{step:<14} {frame:>5} {obj:>6} {iou:>9.6f}")
    print(report.summary() + f" (hole filling {'on' if reference.fill_hole_area else 'off: not available to the official predictor here'})")
    say_random_weights(manifest)  # after the work, so that an error stays the only line
    if report.mean_iou < threshold:
        print(f"FAILED ({manifest.precision}): mean IoU {report.mean_iou:.6f} < {threshold}")
        return 1
    print(f"OK ({manifest.precision}): mean IoU {report.mean_iou:.6f} >= {threshold}")
    return 0


def add_reference_args(p: argparse.ArgumentParser) -> None:
    """The weights the official reference is built with: the export's checkpoint or its random seed."""
    p.add_argument("--checkpoint", type=Path, default=None, help="the checkpoint the model was exported from")
    p.add_argument("--random-weights", action="store_true", help="the model was exported with --random-weights")
    p.add_argument("--seed", type=int, default=0, help="seed used at export (default 0)")


def add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="compare with the official predictor (same weights, frames, prompts)")
    p.add_argument("--model", type=Path, required=True, help="exported model directory")
    add_reference_args(p)
    p.add_argument("--video", type=Path, required=True, help="JPEG folder or video file")
    p.add_argument("--prompts", type=Path, required=True, help="prompts JSON file (see README)")
    p.add_argument("--frames", type=int, default=None, help="use the first N frames of a video file")
    p.add_argument("--threshold", type=float, default=None,
                   help="minimum mean IoU (default by the model's precision: fp32 0.999, fp16 0.99, int8 and int8-cpu 0.97)")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = default)")
    p.add_argument("--backend", default="ort", choices=("ort", "ort-gpu", "trt"),
                   help="inference backend: ort (ONNX Runtime CPU), ort-gpu (onnxruntime-gpu), trt (TensorRT engines from `sam2rt build` in MODEL_DIR/engines)")
    p.set_defaults(func=_cmd_verify)
