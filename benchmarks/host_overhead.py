"""Host cost of ``StreamTracker.track``: everything but the arithmetic, as on TensorRT's path.

``python -m sam2rt.benchmarks.host_overhead --model DIR [--objects 1 4] [--frames 300] [--size 720x1280]``
(also ``sam2rt bench --host-overhead``). The tracker runs on a :class:`NullExecutor`: its graphs do nothing,
preprocessing is left to the device (only the frame's copy into pinned staging remains), a step key seen twice
is "replayed" (no Python of the step runs, as a CUDA graph launch), and thresholded masks come "down" as one
copy per object. What remains is our Python/numpy per frame: bank bookkeeping, control arrays, hole filling
on the low-res logits, result assembly. The old ``DeviceTracker`` (before one tracker, which returned
float32 logits at video size) runs on the same executor when this file is run against that tree.
Reports median, p10/p90 of per-frame milliseconds; the CPU may be shared: interleave and repeat.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from sam2rt.runtime.backends.cuda import Buf, HostAllocator


SKIP = 10  # frames not timed: the bank filling up, the step's direct runs and its capture


class DeviceCopies(HostAllocator):
    """Host buffers whose device-to-device copies cost what they cost the host on a GPU: an asynchronous
    enqueue (a few microseconds), not a numpy copy (the bank's ring move, the feature buffer's move)."""

    def copy(self, dst: Buf, src: Buf, stream: Any = None) -> None:
        assert dst.nbytes == src.nbytes, f"copy of {src.shape} into {dst.shape}"


class NullExecutor:
    """An executor that does no arithmetic (see the module docstring)."""

    stream = None

    def __init__(self) -> None:
        self.allocator = DeviceCopies()
        self.generation = 0
        self._seen: dict[tuple, int] = {}
        self._staging: np.ndarray | None = None
        self._masks: np.ndarray | None = None

    def preprocess(self, rgb: np.ndarray, image: Buf, bgr: bool = False) -> None:
        if self._staging is None or self._staging.shape != rgb.shape:
            self._staging = np.empty_like(rgb)
        if bgr:  # as TrtExecutor: the one copy into pinned staging swaps the channels
            cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB, dst=self._staging)
        else:
            np.copyto(self._staging, rgb)  # the frame into pinned memory; the resize runs on the device

    def run(self, graph: str, tensors: dict[str, Buf]) -> None:
        """No arithmetic."""

    def step(self, key: tuple, enqueue: Callable[[], None]) -> None:
        full = (self.generation, *key)
        self._seen[full] = self._seen.get(full, 0) + 1
        if self._seen[full] <= 2:  # run, run + capture (as GraphCache); replays launch a graph: no Python of it
            enqueue()

    def round_bank(self, slot: Buf) -> None:
        """On the device."""

    def release(self, buffers: Any) -> None:
        buffers.free()
        self.generation += 1
        self._seen = {}

    def synchronize(self) -> None:
        """Nothing queued."""

    def close(self) -> None:
        """Nothing held."""

    def masks(self, low: np.ndarray, size: tuple[int, int], dtype: type, device: Any = None) -> np.ndarray:
        """Device-side threshold/resize: only the result's copy down remains."""
        shape = (low.shape[0], *size)
        if self._masks is None or self._masks.shape != shape or self._masks.dtype != np.dtype(dtype):
            self._masks = np.zeros(shape, dtype)
        return self._masks.copy()


_ENGINES: dict[Path, Any] = {}


def _engine(model: Path, make: Callable[..., Any]) -> Any:
    """One loaded model per directory for all measurements of a run."""
    if model not in _ENGINES:
        _ENGINES[model] = make(model, threads=1)
    return _ENGINES[model]


def _timed(call: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def measure(model: Path, objects: int, frames: int, size: tuple[int, int], output: str,
            image_size: int | None = None) -> dict[str, Any]:
    """Per-frame host milliseconds of ``track`` with ``objects`` objects on (H, W) frames."""
    try:
        from sam2rt.runtime.backends import executor as device_step
    except ImportError:  # a tree before the backends/ layout
        from sam2rt.runtime import device_step  # type: ignore[no-redef]

    rng = np.random.default_rng(0)
    clip = [rng.integers(0, 255, (*size, 3), dtype=np.uint8) for _ in range(8)]
    ex = NullExecutor()
    if hasattr(device_step, "DeviceTracker"):  # the tree before one tracker
        tracker = device_step.DeviceTracker(model, executor=ex, threads=1)
        track: Callable[[np.ndarray], Any] = tracker.track
        which = "old DeviceTracker (float32 logits at video size)"
    else:
        from sam2rt.runtime.engine import Engine
        from sam2rt.runtime.stream import StreamTracker

        engine = _engine(model, Engine)
        if image_size is not None:  # the graphs never run here: buffers and logits at another model's sizes
            engine.size, engine.h = image_size, image_size // 16
        tracker = StreamTracker(engine=engine, executor=ex)
        which = f"StreamTracker, output={output}"
        track = (lambda f: tracker.track(f, output="result")) if output == "result" else tracker.track
    tracker.load_first_frame(clip[0])
    for k in range(objects):
        tracker.add_new_prompt(0, k + 1, points=[[50 + 100 * k, 60]], labels=[1])
    i = iter(range(10**9))
    ms = _timed(lambda: track(clip[next(i) % len(clip)]), frames)[SKIP:]  # past the run + capture of the one graph
    return {"tracker": which, "image_size": tracker.engine.size, "objects": objects,
            "frame": f"{size[1]}x{size[0]}", "frames": len(ms),
            "median_ms": float(np.median(ms)), "p10_ms": float(np.percentile(ms, 10)),
            "p90_ms": float(np.percentile(ms, 90))}


def ort_share(model: Path, objects: int, frames: int, size: tuple[int, int], threads: int = 1) -> dict[str, Any]:
    """The ONNX Runtime CPU path: per-frame ms of ``track`` and the part spent outside the graphs' ``run``."""
    from sam2rt.runtime.stream import StreamTracker

    tracker = StreamTracker(model, threads=threads)
    in_graphs = [0.0]
    for runner in tracker.engine.runners.values():
        def timed(feeds, out=None, _run=runner.run):
            t0 = time.perf_counter()
            try:
                return _run(feeds, out=out)
            finally:
                in_graphs[0] += time.perf_counter() - t0
        runner.run = timed
    rng = np.random.default_rng(0)
    clip = [rng.integers(0, 255, (*size, 3), dtype=np.uint8) for _ in range(4)]
    tracker.load_first_frame(clip[0])
    for k in range(objects):
        tracker.add_new_prompt(0, k + 1, points=[[50 + 100 * k, 60]], labels=[1])
    total, graphs = [], []
    for i in range(frames):
        in_graphs[0] = 0.0
        t0 = time.perf_counter()
        tracker.track(clip[i % len(clip)], output="result")
        total.append((time.perf_counter() - t0) * 1e3)
        graphs.append(in_graphs[0] * 1e3)
    host = np.array(total[2:]) - np.array(graphs[2:])
    return {"objects": objects, "track_ms": float(np.median(total[2:])), "host_ms": float(np.median(host)),
            "host_share": float(np.median(host / np.array(total[2:])))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sam2rt.benchmarks.host_overhead", description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--objects", type=int, nargs="+", default=[1, 4])
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--size", default="720x1280", help="frame HxW (default 720x1280)")
    p.add_argument("--output", nargs="+", default=["result"], choices=("result", "logits"),
                   help="track()'s output: result (the fast one: masks from the device) and/or logits")
    p.add_argument("--rounds", type=int, default=1, help="repeat the object counts in turn")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--image-size", type=int, default=None,
                   help="time at this model size (buffers, low-res logits) with the model's graphs loaded: no graph "
                        "runs, so a small export stands in for a large one")
    p.add_argument("--ort", action="store_true", help="instead: the ONNX Runtime CPU path's host share")
    args = p.parse_args(argv)
    from sam2rt.benchmarks.report import machine_info

    size = tuple(int(s) for s in args.size.split("x"))
    if args.ort:
        for k in args.objects:
            r = ort_share(args.model, k, args.frames, size)
            print(f"ONNX Runtime CPU, {k} object(s) at {args.size}: track {r['track_ms']:.1f} ms, "
                  f"host {r['host_ms']:.2f} ms ({100 * r['host_share']:.1f} %) (medians)", flush=True)
        return 0
    rows = []
    for _ in range(args.rounds):
        for output in args.output:
            for k in args.objects:
                row = measure(args.model, k, args.frames, size, output, args.image_size)
                rows.append(row)
            print(f"{row['tracker']}: {k} object(s) at {row['frame']}: median {row['median_ms']:.3f} ms "
                  f"(p10 {row['p10_ms']:.3f}, p90 {row['p90_ms']:.3f}) over {row['frames']} frames", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({"host_overhead": rows, "machine": machine_info()}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
