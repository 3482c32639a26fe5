"""``sam2rt bench``: latency per component, frames per second, memory, optionally against the official predictor.

The flags map onto :class:`sam2rt.benchmarks.bench.BenchConfig`; the work is ``run_bench``, the outputs
``sam2rt.benchmarks.report``. Heavy modules are imported inside the handler.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from sam2rt.errors import Sam2rtError


def _check_outputs(args: argparse.Namespace) -> None:
    """Fail before a long run when an output cannot be written or a needed package is missing."""
    from sam2rt.outputs import check_writable_file

    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path is None:
            continue
        check_writable_file(path, flag)
        if not path.parent.is_dir():
            raise Sam2rtError(f"{flag} {path}: the folder {path.parent} does not exist; create it first")
    if args.plot is not None:
        from sam2rt.benchmarks.report import require_matplotlib

        require_matplotlib()
    if args.compare_official and not all(importlib.util.find_spec(m) for m in ("torch", "sam2")):
        raise Sam2rtError("--compare-official needs torch and the official sam2 package; install the export extra "
                          "(pip install 'sam2rt[export]') or drop --compare-official")


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.host_overhead:  # no arithmetic: only our host work per track() (see benchmarks/host_overhead.py)
        from sam2rt.benchmarks.host_overhead import main as host_overhead

        extra = ["--json", str(args.json)] if args.json is not None else []
        frames = str(max(args.frames, 300)) if args.frames == 30 else str(args.frames)  # 300 unless given
        return host_overhead(["--model", str(args.model), "--objects", "1", "4", "--rounds", "3", "--frames", frames,
                              "--output", "result", "logits", *extra])
    if args.video is None:
        raise Sam2rtError("sam2rt bench needs --video (a video file or JPEG folder), except with --host-overhead")
    _check_outputs(args)
    from sam2rt.benchmarks.bench import BenchConfig, run_bench
    from sam2rt.benchmarks.report import format_table, plot, write_json

    cfg = BenchConfig(model=args.model, video=args.video, backend=args.backend, frames=args.frames,
                      objects=args.objects, threads=args.threads, warmup=args.warmup, repeats=args.repeats,
                      compare_official=args.compare_official, checkpoint=args.checkpoint,
                      seed=None if args.checkpoint is not None else (0 if args.seed is None else args.seed),
                      official_repeats=args.official_repeats, soak=args.soak)
    result = run_bench(cfg)
    print(format_table(result))
    from sam2rt.cli.random_weights import say_random_weights

    say_random_weights(args.model)  # after the work, so that an error stays the only line
    if args.json is not None:
        print(f"wrote {write_json(result, args.json)}")
    if args.plot is not None:
        print(f"wrote {plot(result, args.plot)}")
    return 0


def add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="latency per graph, frames per second, memory (optionally vs the official)",
                       usage="sam2rt bench --model MODEL --video VIDEO [options]\n"
                             "       sam2rt bench --model MODEL --host-overhead")
    p.add_argument("--model", type=Path, required=True, help="exported model directory")
    p.add_argument("--backend", default="ort", choices=("ort", "ort-gpu", "trt"),
                   help="inference backend: ort (ONNX Runtime CPU), ort-gpu (onnxruntime-gpu), trt (TensorRT engines from `sam2rt build` in MODEL_DIR/engines)")
    p.add_argument("--video", type=Path, default=None, help="video file or JPEG folder (required, except with --host-overhead)")
    p.add_argument("--frames", type=int, default=30, help="frames to track (default 30)")
    p.add_argument("--objects", type=int, default=2, help="objects, one click each on frame 0 (default 2)")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads, also for torch (0 = default)")
    p.add_argument("--warmup", type=int, default=7, help="frames left out of the steady state (default 7)")
    p.add_argument("--repeats", type=int, default=3, help="end-to-end repeats, medians quoted (default 3)")
    p.add_argument("--compare-official", action="store_true", help="also time the official predictor")
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", type=Path, default=None, help="checkpoint the model was exported from")
    weights.add_argument("--seed", type=int, default=None, help="random-weights seed used at export (default 0)")
    p.add_argument("--official-repeats", type=int, default=1, help="rounds of the official comparison (default 1)")
    p.add_argument("--soak", type=int, default=0, metavar="N", help="StreamTracker soak over N frames (RSS growth)")
    p.add_argument("--host-overhead", action="store_true", help="only the host cost per StreamTracker.track() "
                   "(1 and 4 objects, 1280x720 frames), graphs doing no arithmetic: TensorRT's host work")
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG: latency per component, FPS vs objects")
    p.set_defaults(func=_cmd_bench)
