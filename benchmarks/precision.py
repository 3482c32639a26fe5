"""Accuracy and ONNX Runtime CPU latency of precision variants (fp32 / fp16 / int8 / int8-cpu) of one export.

Three measurements per model directory, all in one run so they share the same inputs:

* per-graph output error against the FP32 graphs, on graph inputs captured while the FP32 model tracks
  calibration-style clips (``calibration.capture``: real images, real memory banks);
* end-to-end mask IoU against the *official* predictor (same weights, frames and prompts; the official
  predictor runs once and every variant is compared with it);
* median ONNX Runtime CPU latency per graph on the captured inputs, the variants called in turn.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from sam2rt import contract as C
from sam2rt.calibration.capture import CaptureSettings, Samples, captured_samples, evenly
from sam2rt.calibration.sampling import find_sources, plan_clips
from sam2rt.manifest import Manifest, load_manifest
from sam2rt.runtime.backends import GraphRunner, load_runners

# The output whose error each row reports (the one the next stage consumes).
MAIN_OUTPUT = {"image_encoder": "vision_feat", "memory_attention": "conditioned_feat",
               "mask_decoder": "low_res_masks", "memory_encoder": "memory"}


@dataclass
class VariantResult:
    """One model directory's row: per-graph relative error and latency, end-to-end IoU."""

    directory: Path
    precision: str
    graph_precision: dict[str, str]
    rel_error: dict[str, float] = field(default_factory=dict)  # ||ours - fp32|| / ||fp32||, worst sample
    max_abs: dict[str, float] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)  # median
    mean_iou: float = float("nan")
    min_iou: float = float("nan")
    masks: int = 0
    mean_iou_present: float = float("nan")  # over the masks where both predictors find the object
    presence_disagreements: int = 0


def _graph_precision(manifest: Manifest) -> dict[str, str]:
    graphs = manifest.raw.get("conversion", {}).get("graphs", {})
    return {s.name: graphs.get(s.name, {}).get("precision", manifest.precision) for s in C.GRAPHS}


def _finite(a: np.ndarray) -> np.ndarray:
    """Mask logits of absent objects are NO_OBJ_SCORE; compare only the informative entries."""
    return a > C.NO_OBJ_SCORE / 2


def graph_errors(reference: dict[str, GraphRunner], runners: dict[str, GraphRunner],
                 samples: Samples, limit: int = 16) -> tuple[dict[str, float], dict[str, float]]:
    """Worst relative L2 error and max |difference| of each graph's main output over (up to ``limit``,
    evenly picked) samples."""
    rel: dict[str, float] = {}
    mx: dict[str, float] = {}
    for name, feeds_list in samples.items():
        out = MAIN_OUTPUT[name]
        rel[name], mx[name] = 0.0, 0.0
        for feeds in evenly(feeds_list, limit):
            a = reference[name].run(feeds)[out]
            b = runners[name].run(feeds)[out]
            keep = _finite(a) & _finite(b) if name == "mask_decoder" else np.ones(a.shape, bool)
            diff = (b - a)[keep]
            rel[name] = max(rel[name], float(np.linalg.norm(diff) / max(np.linalg.norm(a[keep]), 1e-12)))
            mx[name] = max(mx[name], float(np.abs(diff).max(initial=0.0)))
    return rel, mx


def graph_latency(runners: dict[str, GraphRunner], samples: Samples, calls: int = 5) -> dict[str, float]:
    """Median wall time (ms) of ``run`` per graph over up to ``calls`` samples, after one warm-up call."""
    return interleaved_latency([runners], samples, calls)[0]


def interleaved_latency(runner_sets: Sequence[dict[str, GraphRunner]], samples: Samples,
                        calls: int = 5) -> list[dict[str, float]]:
    """Median wall time (ms) per graph for each set of runners, the sets called in turn on the same feeds.

    Interleaving (variant A, B, C, then A, B, C again) puts a busy spell on a shared machine into every
    variant alike; the last ``calls`` samples are used (full memory banks), after one warm-up call each.
    """
    times: list[dict[str, list[float]]] = [{name: [] for name in samples} for _ in runner_sets]
    for name, feeds_list in samples.items():
        picks = feeds_list[-calls:]
        for runners in runner_sets:
            runners[name].run(picks[0])
        for feeds in picks:
            for runners, per_graph in zip(runner_sets, times):
                t = time.perf_counter()
                runners[name].run(feeds)
                per_graph[name].append((time.perf_counter() - t) * 1e3)
    return [{name: float(np.median(v)) for name, v in per_graph.items()} for per_graph in times]


def precision_report(models: Sequence[Path], video: Path, prompts: Path, data: Sequence[Path],
                     checkpoint: Path | None = None, seed: int | None = 0, frames: int = 16,
                     video_frames: int | None = None, threads: int = 0, latency_calls: int = 7,
                     log: Callable[[str], None] = print) -> list[VariantResult]:
    """Measure every model directory of ``models`` (variants of one export; the FP32 one is found by hash).

    Args:
        models: model directories (fp32 first is customary; order is kept in the result).
        video, prompts: the end-to-end check, as ``sam2rt verify``.
        data: videos/images for the captured graph inputs (as ``sam2rt calibrate --data``).
        frames: calibration frames to capture graph inputs from.
        latency_calls: timed calls per graph and variant (variants interleaved, median quoted).
    """
    import torch

    from sam2rt.benchmarks.parity import compare, jpeg_folder, official_predictor, run_steps, steps_from_prompts
    from sam2rt.prompts_file import load_prompts
    from sam2rt.runtime.predictor import VideoPredictor

    manifests = [load_manifest(m) for m in models]
    fp32 = next((m for m in manifests if m.precision == "fp32"), None)
    if fp32 is None:
        from sam2rt.errors import Sam2rtError

        raise Sam2rtError("pass the FP32 model directory (from `sam2rt export`) among --models: "
                          "graph errors are measured against it")
    samples = captured_samples(fp32, plan_clips(find_sources(data), frames), CaptureSettings(), log=log)
    reference_runners = load_runners(fp32.directory, threads=threads)
    steps = steps_from_prompts(load_prompts(prompts))
    with tempfile.TemporaryDirectory() as tmp:
        folder = str(jpeg_folder(video, video_frames, Path(tmp)))
        log("official predictor ...")
        official = run_steps(official_predictor(fp32, checkpoint, seed), folder, steps,
                             frame_hook=torch.inference_mode)
        results = []
        runner_sets = [load_runners(m.directory, threads=threads) for m in manifests]
        log(f"per-graph latency, {len(manifests)} variants interleaved ...")
        latencies = interleaved_latency(runner_sets, samples, calls=latency_calls)
        for m, runners, latency in zip(manifests, runner_sets, latencies):
            log(f"{m.directory} ({m.precision}) ...")
            r = VariantResult(m.directory, m.precision, _graph_precision(m), latency_ms=latency)
            r.rel_error, r.max_abs = graph_errors(reference_runners, runners, samples)
            ours = VideoPredictor(m.directory, threads=threads, fill_hole_area=0, progress=False)
            parity = compare(official, run_steps(ours, folder, steps))
            r.mean_iou, r.min_iou, r.masks = parity.mean_iou, parity.min_iou, len(parity.rows)
            r.mean_iou_present, r.presence_disagreements = parity.mean_iou_both_present, parity.presence_disagreements
            results.append(r)
    return results


def format_markdown(results: Sequence[VariantResult]) -> str:
    """Two Markdown tables: per-graph error/latency, and end-to-end IoU."""
    names = [s.name for s in C.GRAPHS]
    lines = ["| precision | graph | graph precision | rel. error vs fp32 | max abs error | ORT CPU ms (median) |",
             "|---|---|---|---|---|---|"]
    for r in results:
        for n in names:
            lines.append(f"| {r.precision} | {n} ({MAIN_OUTPUT[n]}) | {r.graph_precision[n]} | "
                         f"{r.rel_error[n]:.2e} | {r.max_abs[n]:.2e} | {r.latency_ms[n]:.1f} |")
    lines += ["", "| precision | model directory | masks | mean IoU vs official | min IoU | "
              "mean IoU, both present | presence disagreements | sum of graph medians (ms) |",
              "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.precision} | {r.directory.name} | {r.masks} | {r.mean_iou:.4f} | {r.min_iou:.4f} | "
                     f"{r.mean_iou_present:.4f} | {r.presence_disagreements} | {sum(r.latency_ms.values()):.0f} |")
    return "\n".join(lines) + "\n"
