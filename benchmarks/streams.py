"""Many cameras, one model: ``python -m sam2rt.benchmarks.streams --model DIR --video V [--streams 1 4]``.

Loads the model once (``sam2rt.runtime.model.load``), opens N streams, each prompted with one click on its
first frame, and tracks them round-robin (as N cameras served by one process). Reports per-stream FPS,
process RSS after loading, after opening the streams and after tracking, and the buffer bytes per stream.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


from sam2rt.benchmarks.report import rss_mb
from sam2rt.runtime.frames import open_frames
from sam2rt.runtime.model import load


def run(model_dir: Path, video: Path, streams: int, frames: int, threads: int, backend: str) -> dict:
    src = open_frames(str(video))
    clip = [src[i] for i in range(min(len(src), frames + 1))]
    rss0 = rss_mb()
    model = load(model_dir, backend=backend, threads=threads)
    rss_loaded = rss_mb()
    trackers = [model.stream() for _ in range(streams)]
    h, w = clip[0].shape[:2]
    for k, tr in enumerate(trackers):
        tr.load_first_frame(clip[0])
        tr.add_new_prompt(0, 1, points=[[w * (k + 1) / (streams + 1), h / 2]], labels=[1])
    rss_open = rss_mb()
    t0 = time.perf_counter()
    for i in range(1, len(clip)):
        for tr in trackers:
            tr.track(clip[i])
    elapsed = time.perf_counter() - t0
    n = len(clip) - 1
    return {"streams": streams, "frames_per_stream": n, "per_stream_fps": n / elapsed,
            "total_fps": n * streams / elapsed, "rss_start_mb": rss0, "rss_model_mb": rss_loaded,
            "rss_streams_open_mb": rss_open, "rss_end_mb": rss_mb(),
            "buffer_mb_per_stream": trackers[0].stored_bytes() / 2**20, "image_size": model.image_size}


def soak(model_dir: Path, video: Path, frames: int, threads: int, backend: str, every: int = 100) -> list[dict]:
    """One stream over ``frames`` frames looping the clip; object 2 is added every ``every`` frames and removed
    half-way to the next, object 1 gets a correction click every 50 frames. RSS and buffer bytes per sample."""
    src = open_frames(str(video))
    clip = [src[i] for i in range(min(len(src), 16))]
    h, w = clip[0].shape[:2]
    tr = load(model_dir, backend=backend, threads=threads).stream()
    tr.load_first_frame(clip[0])
    tr.add_new_prompt(0, 1, points=[[w / 3, h / 2]], labels=[1])
    samples, t0 = [], time.perf_counter()
    for i in range(1, frames + 1):
        tr.track(clip[i % len(clip)])
        if i % every == 0:
            tr.add_new_prompt(i, 2, points=[[2 * w / 3, h / 2]], labels=[1])
        elif i % every == every // 2 and 2 in tr.obj_ids:
            tr.remove_object(2)
        if i % 50 == 25:
            tr.add_new_prompt(i, 1, points=[[w / 3 + 10, h / 2]], labels=[1], clear_old_points=False)
        if i % 100 == 0:
            samples.append({"frame": i, "rss_mb": rss_mb(), "objects": len(tr.obj_ids),
                            "buffer_mb": tr.stored_bytes() / 2**20, "elapsed_s": time.perf_counter() - t0})
            print(f"frame {i}: RSS {samples[-1]['rss_mb']:.1f} MB, {samples[-1]['objects']} object(s), "
                  f"buffers {samples[-1]['buffer_mb']:.2f} MB", flush=True)
    return samples


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sam2rt.benchmarks.streams", description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--video", type=Path, required=True)
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--backend", default="ort")
    p.add_argument("--soak", type=int, default=0, metavar="N", help="instead: one stream over N frames, objects "
                   "added/removed/corrected along the way, RSS every 100 frames")
    args = p.parse_args(argv)
    if args.soak:
        soak(args.model, args.video, args.soak, args.threads, args.backend)
        return 0
    r = run(args.model, args.video, args.streams, args.frames, args.threads, args.backend)
    print(f"{r['streams']} stream(s) @ {r['image_size']} px, {args.backend}: {r['per_stream_fps']:.2f} FPS per stream "
          f"({r['total_fps']:.2f} total); RSS {r['rss_start_mb']:.0f} -> model {r['rss_model_mb']:.0f} -> streams open "
          f"{r['rss_streams_open_mb']:.0f} -> end {r['rss_end_mb']:.0f} MB; buffers {r['buffer_mb_per_stream']:.1f} MB/stream")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
