"""The official ``SAM2VideoPredictor`` beside sam2rt: same weights, JPEG frames, clicks, image size and device.

Both predictors run through the official API (``init_state``, ``add_new_points_or_box``,
``propagate_in_video``) on one JPEG folder, so their seconds per frame cover the same work: JPEG decoding
and preprocessing (the official ``init_state`` does every frame up front, sam2rt lazily), the clicks on
frame 0 and the propagation. Hole filling follows the official predictor (off on CPU, where its CUDA
kernel is missing) in both. A per-frame mask IoU guards the speedup: none is quoted when the results
differ. Needs the export extra (torch, the official ``sam2``).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from sam2rt.benchmarks.bench import IOU_SANITY, IOU_SANITY_BY_PRECISION, BenchConfig, Click, prompt, warm_up
from sam2rt.manifest import Manifest
from sam2rt.runtime.frames import extract_jpeg_folder, open_frames
from sam2rt.runtime.predictor import VideoPredictor

SECONDS_PER_FRAME = "(init_state + clicks on frame 0 + propagate_in_video) / frames, same JPEG folder"


@dataclass
class ApiRun:
    """One timed session through the official API; ``results`` as ``parity.run_steps`` returns them."""

    init_s: float
    prompts_s: float
    propagate_s: float
    results: list[tuple[str, int, list, np.ndarray]] | None
    cpu_s: float = 0.0  # process CPU time (all threads) of the whole session: what a busy machine distorts least

    @property
    def total_s(self) -> float:
        return self.init_s + self.prompts_s + self.propagate_s


def api_session(predictor: Any, video: str, clicks: Sequence[Click], context: Callable) -> ApiRun:
    """init_state, one click per object on frame 0, forward propagation; masks are converted after timing."""
    raw = []
    with context():
        cpu_start = time.process_time()
        start = time.perf_counter()
        state = predictor.init_state(video)
        init_done = time.perf_counter()
        for i, click in enumerate(clicks):
            frame, ids, masks = prompt(predictor, state, 0, click)
            raw.append((f"{i}:points", frame, list(ids), masks))
        prompts_done = time.perf_counter()
        for frame, ids, masks in predictor.propagate_in_video(state):
            raw.append((f"{len(clicks)}:propagate", frame, list(ids), masks))
        end = time.perf_counter()
        cpu_s = time.process_time() - cpu_start
    from sam2rt.benchmarks.parity import to_numpy  # imports torch: only once a session has run

    results = [(step, frame, ids, to_numpy(masks)) for step, frame, ids, masks in raw]
    return ApiRun(init_done - start, prompts_done - init_done, end - prompts_done, results, cpu_s)


def one_state_per_object(predictor: Any) -> bool:
    """EdgeTAM's official predictor cannot encode two objects' memories in one call (its perceiver's
    ``forward_2d`` fails for a batch of objects: upstream EdgeTAM#15), so it tracks one object per inference
    state; SAM 2's tracks them all in one."""
    return getattr(predictor, "spatial_perceiver", None) is not None


def official_session(predictor: Any, video: str, clicks: Sequence[Click], per_object: bool) -> ApiRun:
    """One timed official session over ``clicks``; ``per_object``: one inference state per object, run one after
    the other (what a user of EdgeTAM's predictor must do for several objects), times summed, results per object
    (``split_objects``)."""
    import torch

    if not per_object:
        return api_session(predictor, video, clicks, torch.inference_mode)
    runs = [api_session(predictor, video, [click], torch.inference_mode) for click in clicks]
    rows = [row for run, click in zip(runs, clicks) for row in split_objects(run.results, [click])]
    return ApiRun(sum(r.init_s for r in runs), sum(r.prompts_s for r in runs), sum(r.propagate_s for r in runs),
                  sorted(rows, key=_row_order), sum(r.cpu_s for r in runs))


def split_objects(results: Sequence[tuple[str, int, list, np.ndarray]],
                  clicks: Sequence[Click]) -> list[tuple[str, int, list, np.ndarray]]:
    """``api_session`` results as one row per (kind, frame, object), ordered by kind, frame, object whatever the
    sessions: a click row keeps only the clicked object (step "i:points" clicked ``clicks[i]``), a propagated
    frame gives one row per object."""
    rows = []
    for step, frame, ids, masks in results:
        index, kind = step.split(":")
        if kind == "points":
            obj = clicks[int(index)][0]
            rows.append(("points", frame, [obj], masks[ids.index(obj)][None]))
        else:
            rows.extend((kind, frame, [obj], masks[k:k + 1]) for k, obj in enumerate(ids))
    return sorted(rows, key=_row_order)


def _row_order(row: tuple[str, int, list, np.ndarray]) -> tuple[bool, int, int]:
    return row[0] != "points", row[1], row[2][0]


def jpeg_clip(video: Path, frames: int, out: Path) -> Path:
    """The first ``frames`` frames as a JPEG folder (the only input the official predictor reads)."""
    if not video.is_dir():
        return extract_jpeg_folder(video, out, max_frames=frames)
    return first_jpegs(video, frames, out)


def first_jpegs(folder: Path, count: int, out: Path) -> Path:
    """A new folder with copies of the first ``count`` JPEG frames of ``folder``."""
    out.mkdir(parents=True)
    for path in open_frames(folder).paths[:count]:
        shutil.copy(path, out / path.name)
    return out


def _iou_summary(report: Any, threshold: float = IOU_SANITY) -> dict[str, Any]:
    worst: dict[tuple[str, int], float] = {}
    for step, frame, _, iou in report.rows:
        worst[(step, frame)] = min(iou, worst.get((step, frame), 1.0))
    return {"masks": len(report.rows), "mean": report.mean_iou, "min": report.min_iou,
            "mean_both_present": _number_or_none(report.mean_iou_both_present),  # None: no frame where both find it
            "presence_disagreements": report.presence_disagreements,
            "max_logit_diff": report.max_logit_diff, "threshold_mean": threshold,
            "results_match": bool(report.mean_iou >= threshold),
            "per_frame_min": [[step, frame, iou] for (step, frame), iou in worst.items()]}


def _number_or_none(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def compare_official(cfg: BenchConfig, manifest: Manifest, clicks: Sequence[Click],
                     log: Callable[[str], None] = print) -> dict[str, Any]:
    """Time both predictors ``cfg.official_repeats`` times (interleaved, after a warm-up each) on the first
    ``cfg.frames`` frames with ``clicks``; returns seconds per frame, speedups and the IoU summary."""
    import torch

    from sam2rt.benchmarks.parity import compare, official_predictor

    reference = official_predictor(manifest, cfg.checkpoint, cfg.seed if cfg.checkpoint is None else None)
    per_object = one_state_per_object(reference)
    ours = VideoPredictor(cfg.model, backend=cfg.backend, threads=cfg.threads,
                          fill_hole_area=reference.fill_hole_area, progress=False)
    default_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)  # the same intra-op thread count as ONNX Runtime
    mine: list[ApiRun] = []
    theirs: list[ApiRun] = []
    try:
        torch_threads = torch.get_num_threads()
        with tempfile.TemporaryDirectory(prefix="sam2rt-bench-") as tmp:
            folder = jpeg_clip(cfg.video, cfg.frames, Path(tmp) / "clip")
            warm = str(first_jpegs(folder, 2, Path(tmp) / "warm"))
            warm_up(ours, warm, clicks)
            for group in ([[c] for c in clicks] if per_object else [clicks]):
                warm_up(reference, warm, group, torch.inference_mode)
            for r in range(cfg.official_repeats):
                mine.append(api_session(ours, str(folder), clicks, contextlib.nullcontext))
                theirs.append(official_session(reference, str(folder), clicks, per_object))
                if per_object:
                    mine[-1].results = split_objects(mine[-1].results, clicks)
                log(f"bench: official {theirs[-1].total_s / cfg.frames:.3f} s/frame, "
                    f"sam2rt {mine[-1].total_s / cfg.frames:.3f} s/frame (round {r + 1}/{cfg.official_repeats}; "
                    f"CPU time {theirs[-1].cpu_s / cfg.frames:.3f} vs {mine[-1].cpu_s / cfg.frames:.3f} s/frame)")
                if r:  # only the first round's masks are compared
                    mine[-1].results = theirs[-1].results = None
    finally:
        torch.set_num_threads(default_threads)
    threshold = IOU_SANITY_BY_PRECISION.get(manifest.precision, IOU_SANITY)
    iou = _iou_summary(compare(theirs[0].results, mine[0].results), threshold)
    n = cfg.frames
    official_s = float(np.median([run.total_s for run in theirs])) / n
    ours_s = float(np.median([run.total_s for run in mine])) / n
    official_prop = float(np.median([run.propagate_s for run in theirs])) / n
    ours_prop = float(np.median([run.propagate_s for run in mine])) / n
    official_cpu = float(np.median([run.cpu_s for run in theirs])) / n
    ours_cpu = float(np.median([run.cpu_s for run in mine])) / n
    if not iou["results_match"]:
        log(f"WARNING: sam2rt and the official predictor disagree (mean IoU {iou['mean']:.4f} < {threshold}); "
            "no speedup is quoted")
    match = iou["results_match"]
    return {"frames": n, "objects": len(clicks), "repeats": cfg.official_repeats,
            "official_states": "one inference state per object (EdgeTAM#15), run in turn" if per_object else "one",
            "device": str(next(reference.parameters()).device), "fill_hole_area": int(reference.fill_hole_area),
            "torch_threads": torch_threads, "s_per_frame_means": SECONDS_PER_FRAME,
            "official_s_per_frame": official_s, "ours_s_per_frame": ours_s,
            "official_propagate_s_per_frame": official_prop, "ours_propagate_s_per_frame": ours_prop,
            "official_runs_s": [run.total_s for run in theirs], "ours_runs_s": [run.total_s for run in mine],
            "official_init_s": float(np.median([run.init_s for run in theirs])),
            "ours_init_s": float(np.median([run.init_s for run in mine])),
            "official_cpu_s_per_frame": official_cpu, "ours_cpu_s_per_frame": ours_cpu,
            "official_runs_cpu_s": [run.cpu_s for run in theirs], "ours_runs_cpu_s": [run.cpu_s for run in mine],
            "cpu_speedup_vs_official": official_cpu / ours_cpu if match and ours_cpu > 0 else None,
            "speedup_vs_official": official_s / ours_s if match else None,
            "propagate_speedup_vs_official": official_prop / ours_prop if match else None, "iou": iou}
