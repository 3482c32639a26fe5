"""``sam2rt verify``: our predictor and the official one side by side, per-frame per-object mask IoU.

Exit codes: 0 when the mean IoU reaches ``--threshold``, 1 when it does not, 2 for bad input.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from sam2rt.errors import Sam2rtError


def _steps(prompts) -> list[tuple]:
    from sam2rt.prompts_file import read_mask

    steps: list[tuple] = []
    for p in prompts:
        if p.mask is not None:
            steps.append(("mask", p.frame, p.obj_id, read_mask(p.mask, p.where)))
        else:
            kwargs = {"points": [list(x) for x in p.points] if p.points else None,
                      "labels": list(p.labels) if p.labels else None, "box": list(p.box) if p.box else None}
            steps.append(("points", p.frame, p.obj_id, kwargs))
    steps.append(("propagate", {}))
    last = max(p.frame for p in prompts)
    if last > 0:
        steps.append(("propagate", {"start_frame_idx": last, "reverse": True}))
    return steps


def _jpeg_folder(video: Path, frames: int | None, tmp: Path) -> Path:
    """The official predictor reads only JPEG folders: extract a video file into one."""
    if video.is_dir():
        return video
    from sam2rt.runtime.frames import extract_jpeg_folder

    return extract_jpeg_folder(video, tmp / "frames", max_frames=frames)


def _cmd_verify(args: argparse.Namespace) -> int:
    if (args.checkpoint is None) == (not args.random_weights):
        raise Sam2rtError("pass exactly one of --checkpoint PATH or --random-weights [--seed N] (the export's weights)")
    import torch

    from sam2rt.benchmarks.parity import compare, official_predictor, run_steps
    from sam2rt.manifest import load_manifest
    from sam2rt.prompts_file import load_prompts
    from sam2rt.runtime.predictor import VideoPredictor

    manifest = load_manifest(args.model)
    prompts = load_prompts(args.prompts)
    if not args.video.exists():
        raise Sam2rtError(f"video {args.video} does not exist; pass a JPEG folder or a video file")
    reference = official_predictor(manifest, args.checkpoint, args.seed if args.random_weights else None)
    ours = VideoPredictor(args.model, threads=args.threads, fill_hole_area=reference.fill_hole_area)
    with tempfile.TemporaryDirectory() as tmp:
        video = str(_jpeg_folder(args.video, args.frames, Path(tmp)))
        steps = _steps(prompts)
        report = compare(run_steps(reference, video, steps, frame_hook=torch.inference_mode),
                         run_steps(ours, video, steps))
    print(f"{'step':<14} {'frame':>5} {'obj_id':>6} {'IoU':>9}")
    for step, frame, obj, iou in report.rows:
        print(f"{step:<14} {frame:>5} {obj:>6} {iou:>9.6f}")
    print(report.summary() + f" (hole filling {'on' if reference.fill_hole_area else 'off: not available to the official predictor here'})")
    if report.mean_iou < args.threshold:
        print(f"FAILED: mean IoU {report.mean_iou:.6f} < {args.threshold}")
        return 1
    print(f"OK: mean IoU {report.mean_iou:.6f} >= {args.threshold}")
    return 0


def add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="compare with the official predictor (same weights, frames, prompts)")
    p.add_argument("--model", type=Path, required=True, help="exported model directory")
    p.add_argument("--checkpoint", type=Path, default=None, help="the checkpoint the model was exported from")
    p.add_argument("--random-weights", action="store_true", help="the model was exported with --random-weights")
    p.add_argument("--seed", type=int, default=0, help="seed used at export (default 0)")
    p.add_argument("--video", type=Path, required=True, help="JPEG folder or video file")
    p.add_argument("--prompts", type=Path, required=True, help="prompts JSON file (see README)")
    p.add_argument("--frames", type=int, default=None, help="use the first N frames of a video file")
    p.add_argument("--threshold", type=float, default=0.999, help="minimum mean IoU (default 0.999)")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = default)")
    p.set_defaults(func=_cmd_verify)
