"""``sam2rt track-batch``: track many videos on a Ray cluster (or a local Ray), one loaded model per worker.

The work is :func:`sam2rt.cluster.batch.run_batch`; this module parses the flags and prints the report.
Ray is imported only when a job has to run, and a missing Ray is a message saying how to install it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sam2rt.cluster.batch import BatchReport


def format_report(report: BatchReport, out: Path) -> str:
    """The end-of-run report: per video ok / failed with the error, per worker FPS, total throughput."""
    if not report.results:
        done = f"all {len(report.skipped)} finished videos in {out} verified" if report.skipped else "no video to run"
        lines = [f"nothing to do: {done}"]
        if report.failed_before:
            lines.append(f"{len(report.failed_before)} failed in an earlier run (add --retry-failed to run them "
                         "again):")
            lines += [f"  {name}: {error}" for name, error in report.failed_before.items()]
        if report.invalid:
            lines.append(f"{len(report.invalid)} cannot run (fix the line in JOBS):")
            lines += [f"  {r.name}: {r.error}" for r in report.invalid]
        return "\n".join(lines)
    lines = [f"videos: {len(report.ok)} ok, {len(report.failed)} failed, {len(report.skipped)} finished earlier "
             f"(skipped), {len(report.failed_before)} failed earlier (skipped)"]
    for r in report.results + report.invalid:
        if r.ok:
            again = ", re-run after its worker died" if r.resumed else ""
            lines.append(f"  ok      {r.name}: {r.frames} frames, {len(r.obj_ids)} objects, {r.wall_s:.2f} s "
                         f"on worker {r.worker}{again}")
        else:
            lines.append(f"  FAILED  {r.name}: {r.error}")
    for index, row in report.per_worker().items():
        lines.append(f"worker {index}: {row['videos']:g} videos, {row['frames']:g} frames, "
                     f"{row['propagate_fps']:.2f} FPS tracking, {row['busy_fps']:.2f} FPS per video (with I/O)")
    frames = sum(r.propagated for r in report.ok)
    lines.append(f"total: {frames} frames in {report.wall_s:.2f} s = {report.throughput_fps:.2f} FPS on "
                 f"{report.workers} workers (of which {report.start_s:.2f} s starting workers and loading the model)")
    return "\n".join(lines)


def write_report(report: BatchReport, out: Path) -> Path:
    """OUT/report.json (atomic) with every job run now and the totals."""
    path = Path(out) / "report.json"
    data = {"results": [asdict(r) for r in report.results + report.invalid], "skipped": report.skipped,
            "failed_before": report.failed_before, "workers": report.workers, "wall_s": report.wall_s,
            "start_s": report.start_s, "throughput_fps": report.throughput_fps,
            "per_worker": {str(k): v for k, v in report.per_worker().items()}}
    tmp = path.with_name(".report.json.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
    return path


def _cmd_track_batch(args: argparse.Namespace) -> int:
    from sam2rt.cluster.batch import BatchConfig, run_batch

    cfg = BatchConfig(jobs=args.jobs, model=args.model, out=args.out, workers=args.workers, address=args.ray,
                      gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker,
                      backend=args.backend, threads=args.threads, retries=args.retries,
                      retry_failed=args.retry_failed)
    if args.gpus_per_worker > 0 and args.backend == "ort":
        print("sam2rt track-batch: note: --backend ort runs on the CPU, so the GPUs each worker reserves stay "
              "idle; use --backend trt or ort-gpu", file=sys.stderr)
    report = run_batch(cfg)
    print(format_report(report, args.out))
    if report.results:
        print(f"report: {write_report(report, args.out)}")
    return 1 if report.failed or report.failed_before else 0


_EPILOG = """\
JOBS is a JSON-lines file, one video per line (paths relative to the JOBS file; URLs are downloaded):
  {"video": "clips/a.mp4", "prompts": [{"frame": 0, "obj_id": 1, "box": [10, 20, 200, 300]}]}
  {"video": "https://host/b.mp4", "prompts": "prompts/b.json", "name": "b"}
Prompts are in the format of `sam2rt track --prompts` (see `sam2rt track --help`).
Each video gets OUT/<name>/ (overlay.mp4, masks/<obj_id>/<frame>.png, summary.json); a video whose summary
exists and verifies is skipped, so the same command resumes an interrupted batch. Exit code 1 when a video
failed. Needs Ray: pip install -e ".[ray]". See docs/scale.md.

examples:
  sam2rt track-batch jobs.jsonl --model models/tiny --out results --workers 2
  sam2rt track-batch jobs.jsonl --model models/tiny --out /shared/results --ray auto --workers 8 --gpus-per-worker 0.5
"""


def add_track_batch(sub: argparse._SubParsersAction) -> None:
    """Register ``sam2rt track-batch``."""
    p = sub.add_parser("track-batch", help="track many videos on a Ray cluster (or a local Ray)",
                       description="Track many videos, one loaded model per Ray worker.", epilog=_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("jobs", type=Path, metavar="JOBS", help="JSON-lines file: one video and its prompts per line")
    p.add_argument("--model", type=Path, required=True, help="exported model folder, readable by every node")
    p.add_argument("--out", type=Path, required=True, help="output folder, shared by every node")
    p.add_argument("--workers", type=int, default=1, help="Ray actors, each with the model loaded (default 1)")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="Ray cluster address (auto, ray://head:10001); default: a local Ray started for this run")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="F",
                   help="GPUs each worker reserves; a fraction (0.5) puts several workers on one GPU")
    p.add_argument("--cpus-per-worker", type=float, default=1.0, metavar="F", help="CPUs each worker reserves")
    p.add_argument("--backend", default="ort", choices=("ort", "ort-gpu", "trt"), help="inference backend")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads per graph per worker (0: default)")
    p.add_argument("--retries", type=int, default=3, help="runs of a video again after its worker died on it")
    p.add_argument("--retry-failed", action="store_true", help="also run videos that failed in an earlier run")
    p.set_defaults(func=_cmd_track_batch)
