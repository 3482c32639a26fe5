"""The TensorRT part of ``gpu_check``: engines of a small export (FP32 and FP16), the postprocessing engine, and
the live tracker on TensorRT against the live tracker on ONNX Runtime CPU (``live_check``). Needs TensorRT,
cuda-python and a GPU; imported by ``gpu_check`` only when TensorRT is installed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from sam2rt.benchmarks.live_check import expect


def export_small(work: Path) -> Path:
    """A tiny model at 256 px with random weights (needs torch + sam2: ``pip install sam2rt[export]``)."""
    from sam2rt.export.exporter import ExportConfig, export_model

    out = work / "tiny256"
    if not (out / "manifest.json").exists():
        export_model(ExportConfig(model="sam2.1_hiera_tiny", out=out, image_size=256, random_seed=0, verify=False))
    return out


def fp16_variant(model: Path, work: Path) -> Path:
    out = work / f"{model.name}-fp16"
    if not (out / "manifest.json").exists():
        done = subprocess.run([sys.executable, "-m", "sam2rt", "convert", str(model), "--precision", "fp16",
                               "--out", str(out)])
        expect(done.returncode == 0, "sam2rt convert --precision fp16")
    return out


def build_small(model: Path, work: Path) -> Path:
    """Engines with small profiles (4 objects, 4 clicks, frames up to 1920) and a shared timing cache."""
    from sam2rt.engines.config import BuildConfig
    from sam2rt.engines.model_engines import build_model_engines
    from sam2rt.manifest import load_manifest

    cfg = BuildConfig.for_bank(load_manifest(model).bank, max_objects=4, max_points=4, max_frame_side=1920,
                               timing_cache=work / "timing.cache")
    t0 = time.perf_counter()
    build_model_engines(model, model / "engines", cfg)
    print(f"  engines of {model.name} ready in {time.perf_counter() - t0:.0f} s")
    return model / "engines"


def read_clip(video: Path, frames: int) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(video))
    clip = []
    while len(clip) < frames:
        ok, bgr = cap.read()
        if not ok:
            break
        clip.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return clip


def live_tracker(model: Path, clip: list[np.ndarray], precision: str, report: dict) -> None:
    """The live tracker on TensorRT vs on ONNX Runtime CPU, two streams of one model interleaved."""
    from sam2rt.benchmarks import live_check as L
    from sam2rt.runtime.imageops import bf16_round_
    from sam2rt.runtime.model import Model

    tol = L.TOLERANCES[precision]
    device, host = Model(model, backend="trt"), Model(model, backend="ort")
    pairs = [(device.stream(), host.stream()), (device.stream(), host.stream())]
    clips = [clip, clip[::-1]]  # the second stream sees the clip backwards, at the same time
    results = L.run_pairs(pairs, clips, L.SCRIPT, tol)
    for i, ((dev, _), result) in enumerate(zip(pairs, results)):
        entry = L.summary(result)
        graphs = dev.executor.graphs
        entry.update(captures=graphs.captures, replays=graphs.replays, tolerance=vars(tol))
        report[f"{precision}_stream{i}"] = entry
        print(f"  {precision} stream {i}: {entry['frames']} frames, max |logit diff| {entry['max_logit_diff']:.3g}, "
              f"min IoU {entry['min_iou']:.4f}, captures {graphs.captures}, replays {graphs.replays}, track p50 "
              f"{entry['track_p50_ms']:.2f} ms p99 {entry['track_p99_ms']:.2f} ms")
        for failure in result["failures"][:5]:
            print(f"    {failure}")
        expect(not result["failures"], f"{precision} stream {i}: every frame within {tol}")
        problems = L.check_graphs(dev.executor, L.SCRIPT, result["frames"])
        expect(not problems, f"{precision} stream {i}: one CUDA graph per object count, replayed "
               + "; ".join(problems))
    ex = pairs[0][0].executor
    if ex.rounds:  # the bf16 rounder against numpy's round-to-nearest-even
        slot = ex.allocator.alloc((2, (model_side(model) // 16) ** 2, 64), np.float32, mirrored=True)
        slot.mirror[...] = np.random.default_rng(1).standard_normal(slot.shape) * 100
        want = bf16_round_(slot.mirror.copy())
        ex.allocator.upload(slot)
        ex.round_bank(slot)
        ex.allocator.download(slot)
        ex.synchronize()
        expect(np.array_equal(slot.mirror, want), "the bf16 rounding engine equals numpy's bf16 rounding")
    else:
        report.setdefault("warnings", []).append("no bf16 rounder on this GPU/TensorRT: float32 bank")
    for dev, ort in pairs:
        dev.close()
        ort.close()
    expect(ex.allocator.allocated == 0, f"{precision}: closed streams hold no device memory")


def model_side(model: Path) -> int:
    from sam2rt.manifest import load_manifest

    return load_manifest(model).image_size


def tensorrt_stack(work: Path, model: Path | None, video: Path, frames: int, report: dict) -> int:
    """Build, then the live comparison per precision; 3 when something needed is missing."""
    if model is None:
        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("sam2") is None:
            print("gpu_check: INCOMPLETE: no model to check; pass --model DIR (made with `sam2rt export` anywhere) "
                  "or install the export extra (torch + sam2) to make one here", file=sys.stderr)
            return 3
        model = export_small(work)
    clip = read_clip(video, frames)
    if len(clip) < 80:
        print(f"gpu_check: INCOMPLETE: {video} gave {len(clip)} frames; the live check needs >= 80 (--video)",
              file=sys.stderr)
        return 3
    for precision, variant in (("fp32", model), ("fp16", None)):
        variant = variant or fp16_variant(model, work)
        print(f"== TensorRT {precision}: {variant}")
        build_small(variant, work)
        if precision == "fp32":
            postprocess_engine(variant)
        live_tracker(variant, clip, precision, report)
    return 0


def postprocess_engine(model: Path) -> None:
    """The postprocessing engine (TF32 off) against ``outputs.threshold_resize``: mask-like logits, 1 and 4
    objects, up- and downscaling, through an upload and through a device buffer bound as it is."""
    from sam2rt import contract as C
    from sam2rt.engines.postprocess import resize_matrices
    from sam2rt.manifest import load_manifest
    from sam2rt.runtime.backends.cuda import CudaAllocator, Stream
    from sam2rt.runtime.backends.device_masks import DeviceMasks
    from sam2rt.runtime.outputs import threshold_resize
    from sam2rt.runtime.backends.trt import load_engines

    engines, cfg = load_engines(model)
    h4 = C.resolve_dims(load_manifest(model).image_size)["h4"]
    stream = Stream()
    alloc = CudaAllocator(stream)
    post = DeviceMasks(alloc, stream, engines[C.POSTPROCESS.name].context(), h4, cfg.max_frame_side)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:h4, :h4].astype(np.float32)
    for K in (1, 4):
        low = np.stack([(r / 2 - np.hypot(yy - cy, xx - cx))[None] * s
                        for cy, cx, r, s in rng.uniform(h4 / 8, h4 * 7 / 8, (K, 4)) / [1, 1, 1, h4 / 8]])
        low = low.astype(np.float32)  # (K, 1, h4, h4) discs of varied radius and slope
        step = alloc.alloc(low.shape, np.float32, mirrored=True)
        np.copyto(step.mirror, low)
        alloc.upload(step)
        for size in ((720, 1280), (1080, 1920), (50, 30)):
            ref = threshold_resize(low, size)
            uploaded, bound = post(low, size, bool), post(low, size, np.uint8, device=step)
            t0 = time.perf_counter()
            for _ in range(10):
                post(low, size, bool, device=step)
            ms = (time.perf_counter() - t0) * 100
            feeds = resize_matrices(h4, *size)
            exact = feeds["resize_rows"].astype(np.float64) @ low.astype(np.float64) @ feeds["resize_cols"]
            near_zero = np.abs(exact[:, 0]) < 1e-4  # where float32 summation order may decide the sign
            off = [int(((m != ref) & ~near_zero).sum()) for m in (uploaded, bound.astype(bool))]
            ties = int(((uploaded != ref) & near_zero).sum())
            expect(off == [0, 0], f"postprocess engine K={K} {size}: masks equal threshold_resize ({ties} pixel(s) "
                                  f"within float rounding of 0 differ; {ms:.2f} ms per call with the download)")
        alloc.free(step)
    post.close()
    alloc.close()
