"""``sam2rt bench``: latency per graph and host step, frames per second, memory, and the official predictor.

The clip (the first ``frames`` frames of the video) is decoded into memory once, so decoding is never timed.
K objects get one positive click each on frame 0, on a grid inside the frame (:func:`grid_clicks`).

- components: per-frame time in each graph runner's ``run`` and in the engine's host steps (preprocessing =
  ``Engine.features`` minus the image encoder; postprocessing = ``frame_outputs`` (hole filling) and
  ``to_video_res``); ``host_other`` is the rest of the frame (memory-bank selection, bookkeeping). Times are
  exclusive: a wrapped call nested in another is not counted twice. Steady state only: frames >= ``warmup``
  (7 = the memory bank is full), pooled over the repeats with K objects.
- e2e: propagation frames per second for 1..K objects (median of ``repeats``), first-frame latency
  (``init_state`` + the first click) and the time to add a click on a tracked frame.
- live (backend trt): the live tracker a real-time user runs (``Model.stream()``, ``track(output="result")``),
  p50/p99 milliseconds per call and its CUDA graph captures/replays; the components above time the offline
  ``VideoPredictor`` through the host-staging runners.
- memory: peak and current RSS of the process; ``soak`` frames of a ``StreamTracker`` looping the clip.
- official: the official ``SAM2VideoPredictor`` (same weights, JPEG frames, clicks, image size, CPU) and
  this runtime, both through the official API on the same JPEG folder, and their per-frame mask IoU.

Timing is ``time.perf_counter`` around each call. ONNX Runtime on CPU runs synchronously: ``run`` returns
when the outputs are written, so the clock brackets the real work. A GPU backend returns before its stream
has finished; there the timer must synchronise the device before reading the clock on either side.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from sam2rt.benchmarks.report import (NOISE_LIMIT, load_warning, machine_info, model_summary, peak_rss_mb,
                                      repeated, rss_mb, summarize, threads_text)
from sam2rt.errors import Sam2rtError
from sam2rt.manifest import load_manifest
from sam2rt.runtime.frames import open_frames
from sam2rt.runtime.predictor import VideoPredictor

COMPONENTS = ("host_preprocess", "image_encoder", "memory_attention", "mask_decoder", "memory_encoder",
              "host_postprocess")
IOU_SANITY = 0.99  # mean IoU vs the official predictor below which no speedup is quoted
# INT8 graphs are held to their own accuracy bar (that of `sam2rt verify`), not to near-parity
IOU_SANITY_BY_PRECISION = {"int8": 0.97, "int8-cpu": 0.97}
RSS_EVERY = 50  # soak: frames between RSS samples
Click = tuple[int, list[float]]  # (obj_id, [x, y]) in video pixels
_MISSING = object()


@dataclass(frozen=True)
class BenchConfig:
    """One ``sam2rt bench`` run; the CLI flags map one-to-one onto these fields.

    checkpoint / seed: the weights the model was exported from (for ``compare_official`` only); seed is
    used when checkpoint is None. soak: StreamTracker frames (0 = no soak). memory: the tracker's memory
    ("sam2" or "samurai", SAMURAI's published config; the official comparison needs "sam2").
    """

    model: Path
    video: Path
    backend: str = "ort"
    frames: int = 30
    objects: int = 2
    threads: int = 0
    warmup: int = 7
    repeats: int = 3
    compare_official: bool = False
    checkpoint: Path | None = None
    seed: int | None = 0
    official_repeats: int = 1
    soak: int = 0
    memory: str = "sam2"

    @property
    def steady_from(self) -> int:
        """First steady-state frame (frame 0 holds the clicks and runs no tracking)."""
        return max(self.warmup, 1)

    def check(self) -> None:
        """Raise a Sam2rtError saying what to change when the run cannot measure anything."""
        for name in ("frames", "objects", "repeats", "official_repeats"):
            if getattr(self, name) < 1:
                raise Sam2rtError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0 or self.soak < 0 or self.threads < 0:
            raise Sam2rtError("--warmup, --soak and --threads must be >= 0")
        if self.frames <= self.steady_from:
            raise Sam2rtError(f"--frames {self.frames} leaves no steady-state frame after --warmup {self.warmup}; "
                              f"use --frames {self.steady_from + 1} or more, or a smaller --warmup")
        if self.compare_official and self.checkpoint is None and self.seed is None:
            raise Sam2rtError("--compare-official needs the export's weights: --checkpoint PT or --seed N")


# --------------------------------------------------------------------------- call timing


class CallTimer:
    """Seconds and calls per label for wrapped callables; nested wrapped calls count only once (innermost)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._nested: list[float] = []  # per open call: seconds spent in wrapped calls inside it

    def clear(self) -> None:
        self.seconds, self.calls = {}, {}

    def wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._nested.append(0.0)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                inner = self._nested.pop()
                self.seconds[label] = self.seconds.get(label, 0.0) + elapsed - inner
                self.calls[label] = self.calls.get(label, 0) + 1
                if self._nested:
                    self._nested[-1] += elapsed
        return timed


@contextlib.contextmanager
def timed_calls(targets: Sequence[tuple[str, object, str]]) -> Iterator[CallTimer]:
    """Wrap ``obj.attr`` for each ``(label, obj, attr)`` with a timer; the originals are restored on exit."""
    timer, saved = CallTimer(), []
    try:
        for label, obj, attr in targets:
            saved.append((obj, attr, vars(obj).get(attr, _MISSING)))
            setattr(obj, attr, timer.wrap(label, getattr(obj, attr)))
        yield timer
    finally:
        for obj, attr, old in reversed(saved):
            if old is _MISSING:
                delattr(obj, attr)
            else:
                setattr(obj, attr, old)


def engine_targets(engine: Any) -> list[tuple[str, object, str]]:
    """What to time in an engine: every graph runner's ``run`` and the host steps around them."""
    targets: list[tuple[str, object, str]] = [(name, runner, "run") for name, runner in engine.runners.items()]
    return targets + [("host_preprocess", engine, "features"), ("host_postprocess", engine, "frame_outputs"),
                      ("host_postprocess", engine, "to_video_res")]


# --------------------------------------------------------------------------- inputs


def load_clip(video: Path, frames: int) -> list[np.ndarray]:
    """The first ``frames`` frames of a video file or JPEG folder, decoded: (H, W, 3) uint8 RGB each."""
    source = open_frames(video)
    try:
        if len(source) < frames:
            raise Sam2rtError(f"{video} has {len(source)} frames; pass --frames {len(source)} or fewer")
        return [np.array(source[i]) for i in range(frames)]
    finally:
        getattr(source, "close", lambda: None)()


def grid_clicks(objects: int, width: int, height: int) -> list[Click]:
    """One positive click per object, obj_ids 1..K, at the centres of a near-square grid over the frame."""
    cols = math.ceil(math.sqrt(objects))
    rows = math.ceil(objects / cols)
    return [(k + 1, [(k % cols + 0.5) * width / cols, (k // cols + 0.5) * height / rows]) for k in range(objects)]


def _second_click(clicks: Sequence[Click], width: int) -> list[float]:
    """A refinement click for the first object, beside its first one and still inside its grid cell."""
    x, y = clicks[0][1]
    return [x + width / (8 * math.ceil(math.sqrt(len(clicks)))), y]


def prompt(predictor: Any, state: Any, frame: int, click: Click) -> Any:
    return predictor.add_new_points_or_box(state, frame, click[0], points=[click[1]], labels=[1])


def warm_up(predictor: Any, video: Any, clicks: Sequence[Click], context: Callable = contextlib.nullcontext) -> None:
    """One untimed session on two frames (official API): first runs of every graph, allocations."""
    with context():
        state = predictor.init_state(video)
        for click in clicks:
            prompt(predictor, state, 0, click)
        for _ in predictor.propagate_in_video(state):
            pass


# --------------------------------------------------------------------------- our predictor


@dataclass
class Session:
    """One timed session: seconds for the first frame, per propagated frame, and a later click."""

    first_frame_s: float
    add_prompt_s: float
    frame_s: list[float] = field(default_factory=list)
    parts: list[dict[str, float]] = field(default_factory=list)  # per frame: label -> exclusive seconds
    calls: list[dict[str, int]] = field(default_factory=list)


def _session(predictor: VideoPredictor, clip: list[np.ndarray], clicks: Sequence[Click], timer: CallTimer) -> Session:
    start = time.perf_counter()
    state = predictor.init_state(clip)
    prompt(predictor, state, 0, clicks[0])
    first = time.perf_counter() - start
    for click in clicks[1:]:
        prompt(predictor, state, 0, click)
    session = Session(first, 0.0)
    frames = predictor.propagate_in_video(state)
    while True:
        timer.clear()
        start = time.perf_counter()
        if next(frames, None) is None:
            break
        session.frame_s.append(time.perf_counter() - start)
        session.parts.append(dict(timer.seconds))
        session.calls.append(dict(timer.calls))
    last, second = len(clip) - 1, (clicks[0][0], _second_click(clicks, clip[0].shape[1]))
    start = time.perf_counter()
    prompt(predictor, state, last, second)
    session.add_prompt_s = time.perf_counter() - start
    predictor.reset_state(state)
    return session


def _components(sessions: list[Session], steady_from: int) -> dict[str, dict[str, Any]]:
    labels = list(COMPONENTS) + sorted({k for s in sessions for p in s.parts for k in p} - set(COMPONENTS))
    samples: dict[str, list[float]] = {label: [] for label in labels + ["host_other"]}
    calls: dict[str, list[int]] = {label: [] for label in labels}
    for s in sessions:
        for wall, parts, n in zip(s.frame_s[steady_from:], s.parts[steady_from:], s.calls[steady_from:]):
            for label in labels:
                samples[label].append(parts.get(label, 0.0))
                calls[label].append(n.get(label, 0))
            samples["host_other"].append(wall - sum(parts.values()))
    out = {label: summarize(values) for label, values in samples.items()}
    for label in labels:
        out[label]["calls_per_frame"] = float(np.mean(calls[label]))
    return out


def measure_live(cfg: BenchConfig, clip: list[np.ndarray], clicks: Sequence[Click]) -> dict[str, Any]:
    """The live tracker a real-time user runs (``Model.stream()``, ``track(output="result")``: the fast output,
    masks made on the device on TensorRT) over the clip with ``clicks``: per-call milliseconds after a warm-up
    of 5 frames, and on TensorRT the CUDA graph captures/replays."""
    from sam2rt.runtime.model import Model

    model = Model(cfg.model, backend=cfg.backend, threads=cfg.threads)
    with model.stream(memory=cfg.memory) as tracker:
        tracker.load_first_frame(clip[0])
        for obj_id, xy in clicks:
            tracker.add_new_prompt(0, obj_id, points=[xy], labels=[1])
        ms = []
        for frame in clip[1:]:
            start = time.perf_counter()
            tracker.track(frame, output="result")
            ms.append((time.perf_counter() - start) * 1e3)
        graphs = getattr(tracker.executor, "graphs", None)
        steady = np.array(ms[5:] or ms)
        return {"frames": len(ms), "objects": len(clicks), "track_p50_ms": float(np.percentile(steady, 50)),
                "track_p99_ms": float(np.percentile(steady, 99)), "fps": float(1e3 / steady.mean()),
                "graph_captures": getattr(graphs, "captures", None), "graph_replays": getattr(graphs, "replays", None)}


def measure_predictor(cfg: BenchConfig, predictor: VideoPredictor, clip: list[np.ndarray],
                      clicks: Sequence[Click]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Components (K objects) and end-to-end timings (1..K objects), ``repeats`` rounds interleaved."""
    sessions: dict[int, list[Session]] = {k: [] for k in range(1, cfg.objects + 1)}
    with timed_calls(engine_targets(predictor.engine)) as timer:
        for _ in range(cfg.repeats):
            for k in sessions:  # interleaved, so a busy spell on the machine hits every K alike
                sessions[k].append(_session(predictor, clip, clicks[:k], timer))
    s0, full = cfg.steady_from, sessions[cfg.objects]
    by_objects = [{"objects": k, "fps": repeated([len(s.frame_s[s0:]) / sum(s.frame_s[s0:]) for s in runs])}
                  for k, runs in sessions.items()]
    e2e = {"steady_from": s0, "steady_frames": cfg.frames - s0, "by_objects": by_objects,
           "frame_ms": summarize([t for s in full for t in s.frame_s[s0:]]),
           "first_frame_ms": repeated([s.first_frame_s * 1e3 for s in full]),
           "add_prompt_ms": repeated([s.add_prompt_s * 1e3 for s in full]), "add_prompt_frame": cfg.frames - 1}
    return _components(full, s0), e2e


# --------------------------------------------------------------------------- memory


def soak(cfg: BenchConfig, clip: list[np.ndarray], clicks: Sequence[Click]) -> dict[str, Any]:
    """A StreamTracker over ``cfg.soak`` frames looping the clip; RSS every 50 frames and its growth."""
    from sam2rt.runtime.stream import StreamTracker

    n, ref = cfg.soak, max(1, min(200, cfg.soak // 5))
    tracker = StreamTracker(cfg.model, backend=cfg.backend, threads=cfg.threads, memory=cfg.memory)
    tracker.load_first_frame(clip[0])
    for obj_id, xy in clicks:
        tracker.add_new_prompt(0, obj_id, points=[xy], labels=[1])
    samples = [{"frame": 0, "rss_mb": rss_mb(), "stored_mb": tracker.stored_bytes() / 2**20}]
    frame_s = []
    for i in range(1, n + 1):
        start = time.perf_counter()
        tracker.track(clip[i % len(clip)])
        frame_s.append(time.perf_counter() - start)
        if i % RSS_EVERY == 0 or i in (ref, n):
            samples.append({"frame": i, "rss_mb": rss_mb(), "stored_mb": tracker.stored_bytes() / 2**20})
    at = {s["frame"]: s for s in samples}
    steady = frame_s[cfg.steady_from - 1:] or frame_s
    return {"frames": n, "reference_frame": ref, "fps": len(steady) / sum(steady), "samples": samples,
            "rss_ref_mb": at[ref]["rss_mb"], "rss_end_mb": at[n]["rss_mb"],
            "rss_growth_pct": 100.0 * (at[n]["rss_mb"] - at[ref]["rss_mb"]) / at[ref]["rss_mb"],
            "stored_ref_mb": at[ref]["stored_mb"], "stored_end_mb": at[n]["stored_mb"], "peak_rss_mb": peak_rss_mb()}


# --------------------------------------------------------------------------- whole run


def _load_text(load: Sequence[float] | None) -> str:
    return "unknown" if not load else " / ".join(f"{v:.2f}" for v in load) + " (1 / 5 / 15 min)"


def device_info(predictor: VideoPredictor) -> dict[str, Any]:
    """Where the graphs run: ONNX Runtime's providers, or TensorRT; on a GPU also its device memory in use.

    GPU runners (ort-gpu, trt) return host arrays only after their stream has finished, so the timers
    around ``run`` bracket the device work.
    """
    runner = next(iter(predictor.engine.runners.values()))
    providers = list(getattr(runner, "providers", None) or [])
    gpu = type(runner).__name__ == "TrtRunner" or bool(providers and providers[0] != "CPUExecutionProvider")
    info: dict[str, Any] = {"name": "cuda" if gpu else "cpu", "providers": providers or ["TensorRT"]}
    if gpu:
        from sam2rt.runtime.backends.cuda import device_properties, memory_info

        info["gpu"] = device_properties()[0]
        info["device_memory_mb"] = memory_info()
    return info


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every measurement of ``cfg``; returns the JSON-ready result (see the module docstring)."""
    cfg.check()
    machine = machine_info()
    manifest = load_manifest(cfg.model)
    clip = load_clip(cfg.video, cfg.frames)
    height, width = clip[0].shape[:2]
    clicks = grid_clicks(cfg.objects, width, height)
    start = time.perf_counter()
    predictor = VideoPredictor(cfg.model, backend=cfg.backend, threads=cfg.threads, progress=False,
                               memory=cfg.memory)
    load_s = time.perf_counter() - start
    log(f"bench: {manifest.model_name} @{manifest.image_size}, {cfg.frames} frames {width}x{height}, "
        f"{cfg.objects} objects, {cfg.repeats} repeats")
    log(f"bench: {machine['cpu']}, {machine['usable_cores']} usable cores, {threads_text(cfg.threads, machine['physical_cores'])}, "
        f"load average {_load_text(machine['loadavg_start'])}")
    if load_warning(machine):
        log(load_warning(machine))
    warm_up(predictor, clip[:2], clicks)
    components, e2e = measure_predictor(cfg, predictor, clip, clicks)
    e2e["load_s"] = load_s
    for label in [k for k, v in components.items() if v.get("calls_per_frame") == 0.0]:
        log(f"WARNING: {label} was not called through a timed entry point; its time is in host_other")
    # before the soak's second model and the official predictor; in a process that imported torch earlier
    # (a test run) both include it
    live = None
    if cfg.backend == "trt":  # what a real-time user runs: the live tracker on the fast output
        live = measure_live(cfg, clip, clicks)
        log(f"bench: live tracker, {live['objects']} objects: track p50 {live['track_p50_ms']:.2f} ms, p99 "
            f"{live['track_p99_ms']:.2f} ms ({live['fps']:.1f} FPS), CUDA graph captures {live['graph_captures']}, "
            f"replays {live['graph_replays']}")
    memory: dict[str, Any] = {"peak_rss_mb": peak_rss_mb(), "current_rss_mb": rss_mb(), "soak": None}
    if cfg.soak:
        log(f"bench: soak, {cfg.soak} frames")
        memory["soak"] = soak(cfg, clip, clicks)
    official = None
    if cfg.compare_official:
        log("bench: the official predictor on the same frames")
        from sam2rt.benchmarks.official import compare_official

        official = compare_official(cfg, manifest, clicks, log)
    machine["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    log(f"bench: load average at the end {_load_text(machine['loadavg_end'])}")
    noisy = [f"fps with {r['objects']} objects" for r in e2e["by_objects"] if r["fps"]["noisy"]]
    noisy += [k for k in ("first_frame_ms", "add_prompt_ms") if e2e[k]["noisy"]]
    if noisy:
        log(f"WARNING: repeats of {', '.join(noisy)} differ by more than {NOISE_LIMIT:.0%} of their median "
            "((max-min)/median); the machine is busy or the run is short; the medians are quoted")
    return {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
            "machine": machine, "device": device_info(predictor), "model": model_summary(manifest),
            "clicks": [{"obj_id": o, "xy": xy} for o, xy in clicks], "components": components, "e2e": e2e,
            "live": live, "memory": memory, "official": official, "noisy": bool(noisy), "noisy_metrics": noisy}

