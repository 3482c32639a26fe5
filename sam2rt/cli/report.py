"""``sam2rt precision-report``: per-graph error, end-to-end IoU and ORT CPU latency of fp32/fp16/int8 variants."""

from __future__ import annotations

import argparse
from pathlib import Path

from sam2rt.cli.verify import add_reference_args
from sam2rt.errors import Sam2rtError


def _cmd_report(args: argparse.Namespace) -> int:
    if (args.checkpoint is None) == (not args.random_weights):
        raise Sam2rtError("pass exactly one of --checkpoint PATH or --random-weights [--seed N] (the export's weights)")
    from sam2rt.benchmarks.precision import format_markdown, precision_report

    results = precision_report(args.models, args.video, args.prompts, args.data, checkpoint=args.checkpoint,
                               seed=args.seed if args.random_weights else None, frames=args.frames,
                               video_frames=args.video_frames, threads=args.threads)
    table = format_markdown(results)
    print(table)
    if args.markdown:
        args.markdown.write_text(table)
        print(f"wrote {args.markdown}")
    return 0


def add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("precision-report", help="accuracy and ORT CPU latency of fp32/fp16/int8 model directories")
    p.add_argument("--models", type=Path, nargs="+", required=True,
                   help="model directories: the FP32 export and its variants (sam2rt convert / calibrate)")
    add_reference_args(p)
    p.add_argument("--video", type=Path, required=True, help="end-to-end check: JPEG folder or video file")
    p.add_argument("--prompts", type=Path, required=True, help="prompts JSON for the end-to-end check")
    p.add_argument("--video-frames", type=int, default=None, help="use the first N frames of a video file")
    p.add_argument("--data", type=Path, nargs="+", required=True,
                   help="videos/images whose tracked frames give the per-graph inputs (as sam2rt calibrate --data)")
    p.add_argument("--frames", type=int, default=16, help="frames captured for per-graph errors (default 16)")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = default)")
    p.add_argument("--markdown", type=Path, default=None, help="also write the tables to this file")
    p.set_defaults(func=_cmd_report)
