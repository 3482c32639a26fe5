"""Captured calibration inputs: every graph's feeds while the FP32 model tracks the calibration clips.

Each clip is tracked by the FP32 ``VideoPredictor`` on ONNX Runtime with automatic prompts (a click and a
box per clip, placed from a seeded grid), so memory attention sees real, filling memory banks and the
memory encoder real masks -- not noise. A :class:`RecordingRunner` wraps each graph's runner and keeps a
copy of every feed. The result is cached as a compressed npz keyed by the FP32 graphs' SHA-256 and the
sampling settings, and reused when present.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from sam2rt import contract as C
from sam2rt.calibration.sampling import Clip, read_clip
from sam2rt.manifest import Manifest, sha256_file
from sam2rt.models import default_cache_dir
from sam2rt.runtime.backends import GraphRunner

CAPTURE_VERSION = 1  # bump when the prompts or the recording change what a cache holds
Feeds = dict[str, np.ndarray]
Samples = dict[str, list[Feeds]]  # graph name -> feeds in the order the tracker ran them


class RecordingRunner(GraphRunner):
    """A runner that keeps a copy of every validated feed, then runs the real runner's ``_run``."""

    def __init__(self, inner: GraphRunner) -> None:
        super().__init__(inner.spec, inner.image_size, inner.memory_tokens)  # EdgeTAM: T latents per memory
        self.inner = inner
        self.feeds: list[Feeds] = []

    def _run(self, feeds: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.feeds.append({k: v.copy() for k, v in feeds.items()})
        return self.inner._run(feeds, out)


@dataclass(frozen=True)
class CaptureSettings:
    """What determines the captured set besides the clips: prompted objects, seed, samples kept per graph."""

    objects: int = 2
    seed: int = 0
    max_samples: int = 64


def clip_prompts(height: int, width: int, objects: int, rng: np.random.Generator) -> list[dict]:
    """Prompts for frame 0 of a clip: object 1 a positive click, object 2 a box, then alternating.

    Positions come from distinct cells of a 3x3 grid over the frame (jittered), so objects differ.
    Returns keyword arguments for ``add_new_points_or_box`` in video pixels (x, y).
    """
    cells = rng.permutation(9)[:objects]
    prompts = []
    for k, cell in enumerate(cells):
        cy, cx = divmod(int(cell), 3)
        x = (cx + 0.5 + rng.uniform(-0.25, 0.25)) * width / 3
        y = (cy + 0.5 + rng.uniform(-0.25, 0.25)) * height / 3
        if k % 2 == 0:
            prompts.append({"points": [[x, y]], "labels": [1]})
        else:
            hw, hh = width / 8 * rng.uniform(0.7, 1.3), height / 8 * rng.uniform(0.7, 1.3)
            prompts.append({"box": [max(x - hw, 0), max(y - hh, 0), min(x + hw, width - 1), min(y + hh, height - 1)]})
    return prompts


def capture(model_dir: Path, clips: Sequence[Clip], settings: CaptureSettings, progress: bool = True) -> Samples:
    """Track every clip with the FP32 model and record each graph's feeds.

    Returns {graph name: [feeds, ...]}, at most ``settings.max_samples`` per graph, picked evenly over the
    run order (so early, empty banks and later, full banks are both kept). Feeds are as the contract
    declares them, e.g. memory_attention ``memory`` float32 (M, B, hw, 64).
    """
    from sam2rt.runtime.predictor import VideoPredictor  # the runtime is only needed when capturing

    predictor = VideoPredictor(model_dir, progress=False)
    runners = predictor.engine.runners
    recorders = {name: RecordingRunner(r) for name, r in runners.items()}
    runners.update(recorders)
    for i, clip in enumerate(tqdm(clips, desc="capture calibration inputs", unit="clip", disable=not progress)):
        frames = read_clip(clip)
        state = predictor.init_state(frames)
        rng = np.random.default_rng([settings.seed, i])
        for obj_id, kwargs in enumerate(clip_prompts(state["video_height"], state["video_width"],
                                                     settings.objects, rng), start=1):
            predictor.add_new_points_or_box(state, frame_idx=0, obj_id=obj_id, **kwargs)
        for _ in predictor.propagate_in_video(state):
            pass
    return {name: evenly(rec.feeds, settings.max_samples) for name, rec in recorders.items()}


def evenly(items: list, limit: int) -> list:
    """At most ``limit`` items, picked evenly over the list (first and last kept)."""
    if len(items) <= limit:
        return items
    picks = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in picks]


def cache_key(source: Manifest, clips: Sequence[Clip], settings: CaptureSettings) -> str:
    """SHA-256 over the FP32 graphs' hashes, the clips (path, size, mtime, range) and the settings."""
    graphs = {s.name: sha256_file(source.graph_path(s.name)) for s in C.GRAPHS}
    payload = {"version": CAPTURE_VERSION, "graphs": graphs, "clips": [c.key() for c in clips],
               "settings": vars(settings)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def save_samples(path: Path, samples: Samples) -> None:
    """Write samples as one compressed npz (keys ``graph/index/input``), atomically."""
    arrays = {f"{g}/{i:05d}/{k}": v for g, feeds in samples.items() for i, f in enumerate(feeds) for k, v in f.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".capture-", suffix=".npz", delete=False) as tmp:
        np.savez_compressed(tmp, **arrays)
    os.replace(tmp.name, path)


def load_samples(path: Path) -> Samples:
    """Read an npz written by :func:`save_samples`."""
    samples: Samples = {s.name: [] for s in C.GRAPHS}
    with np.load(path) as data:
        grouped: dict[tuple[str, int], Feeds] = {}
        for key in data.files:
            graph, index, name = key.split("/")
            grouped.setdefault((graph, int(index)), {})[name] = data[key]
    for (graph, _), feeds in sorted(grouped.items()):
        samples[graph].append(feeds)
    return samples


def captured_samples(source: Manifest, clips: Sequence[Clip], settings: CaptureSettings,
                     cache_dir: Path | None = None, use_cache: bool = True, progress: bool = True,
                     log: Callable[[str], None] = print) -> Samples:
    """The captured set for these clips: from the cache when present, else captured (and cached)."""
    path = (cache_dir or default_cache_dir()) / "calibration" / f"{cache_key(source, clips, settings)}.npz"
    if use_cache and path.is_file():
        try:
            samples = load_samples(path)
            log(f"calibration inputs: cached {path}")
            return samples
        except (OSError, ValueError, KeyError) as e:  # a damaged cache file is recaptured
            log(f"calibration inputs: ignoring unreadable cache {path} ({e})")
    samples = capture(source.directory, clips, settings, progress=progress)
    if use_cache:
        try:
            save_samples(path, samples)
            log(f"calibration inputs: cached to {path}")
        except OSError as e:
            log(f"calibration inputs: cannot write the cache {path} ({e.strerror}); continuing without it")
    return samples
