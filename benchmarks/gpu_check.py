"""One-command check of the GPU stack: ``python -m sam2rt.benchmarks.gpu_check [--model DIR] [--json FILE]``.

CUDA layer (numpy + cuda-python; runs where TensorRT is absent): device and pinned allocations, copies up and
down with their values checked, event timing, a "tracking step" of device copies captured as a CUDA graph and
replayed with new inputs, two sessions (graphs dropped with their buffers), two streams at once, the bank's
ring moves, and streams/events/allocations destroyed. With TensorRT: the engines of a small export (made on
the spot with torch + sam2, or ``--model``) in FP32 and FP16 (small profiles, a timing cache), then the live
tracker on TensorRT (device bank, GPU preprocessing, the bf16 rounder, CUDA-graph replay, device masks)
against the live tracker on ONNX Runtime CPU on the same export (``live_check``): >= 80 frames of a real
clip, 2 objects, a new object, a correction and a removal mid-stream, two streams of one model interleaved;
per frame and object the max logit difference and IoU against stated tolerances; graph captures and
replays counted; p50/p99 of ``track`` on the fast output; the bf16 rounder against numpy's bf16 rounding;
the postprocessing engine against ``threshold_resize``.
Exit status: 0 only when everything ran and passed; 1 on any failure; 3 (with a loud line) when not
everything could run: no CUDA GPU or cuda-python, no TensorRT, no model. A JSON report (``--json``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sam2rt.errors import Sam2rtError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class CheckFailed(Exception):
    """A value read back from the GPU was not what was written."""


def expect(ok: bool, what: str) -> None:
    if not ok:
        raise CheckFailed(what)
    print(f"  ok  {what}")


def cuda_layer(n: int = 1 << 20) -> None:
    """Allocations, pinned copies, stream, events, graph capture/replay, two sessions."""
    from sam2rt.runtime.backends.cuda import CudaAllocator, Event, Stream, device_properties, memory_info
    from sam2rt.runtime.backends.cuda_graph import GraphCache

    name, major, minor = device_properties()
    print(f"GPU: {name} (compute {major}.{minor}), memory {memory_info()['total_mb']:.0f} MiB")
    stream = Stream()
    alloc = CudaAllocator(stream)
    buf = alloc.alloc((n,), np.float32, mirrored=True)
    stream.synchronize()
    alloc.download(buf)
    stream.synchronize()
    expect(not buf.mirror.any(), "a new buffer is zero (cudaMemsetAsync on the stream)")
    values = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    np.copyto(buf.mirror, values)
    start, end = Event(), Event()
    start.record(stream)
    alloc.upload(buf)
    buf.mirror[...] = 0
    alloc.download(buf)
    end.record(stream)
    end.synchronize()
    ms = end.elapsed_ms(start)
    expect(np.array_equal(buf.mirror, values), f"pinned copy up and down ({4 * n >> 20} MiB, {ms:.3f} ms by events)")
    alloc.free(buf)
    expect(alloc.allocated == 0, "free returns the device buffer")

    cache = GraphCache(stream)
    for session in range(2):
        gen = cache.generation
        bufs = {k: alloc.alloc((4, 256), np.float32, mirrored=k in ("x", "out")) for k in ("x", "ring", "out")}

        def enqueue(slot: int, b=bufs) -> None:  # "engines": x -> ring[slot] -> out, all device copies
            alloc.upload(b["x"])
            alloc.copy(b["ring"].slot(slot), b["x"].slot(0))
            alloc.copy(b["out"].slot(1), b["ring"].slot(slot))
            alloc.download(b["out"])

        for step in range(6):  # one key: run, run + capture, then replays (new inputs through the pinned copy)
            bufs["x"].mirror[0] = 100 * session + step
            cache.step((1,), lambda: enqueue(1))
            stream.synchronize()
            expect(bufs["out"].mirror[1, 0] == 100 * session + step,
                   f"session {session}, step {step}: value through the {'replayed' if step >= 2 else 'run'} step")
        expect(cache.replays == 4 * (session + 1) and len(cache) == 1, f"session {session}: 1 graph, replayed")
        cache.drop()  # a new session: buffers go, graphs with them
        for b in bufs.values():
            alloc.free(b)
        expect(cache.generation == gen + 1 and len(cache) == 0, f"session {session}: graphs dropped with buffers")
    alloc.close()
    for handle in (start, end, stream):
        handle.close()


def cuda_extras(n: int = 4096) -> None:
    """Two streams at once, the bank's ring moves (device copies between slots), and destruction."""
    from sam2rt import contract as C
    from sam2rt.runtime.backends.cuda import CudaAllocator, Event, Stream
    from sam2rt.runtime.backends.device_bank import DeviceBank
    from sam2rt.runtime.bank import SelectionRules

    streams = [Stream(), Stream()]
    allocs = [CudaAllocator(s) for s in streams]
    bufs = [a.alloc((n,), np.float32, mirrored=True) for a in allocs]
    for i, (a, b) in enumerate(zip(allocs, bufs)):
        b.mirror[...] = i + 1
        a.upload(b)
        b.mirror[...] = 0
        a.download(b)
    for s in streams:
        s.synchronize()
    expect(all((b.mirror == i + 1).all() for i, b in enumerate(bufs)), "two streams, each with its own copies")
    bank = DeviceBank(C.BankConfig(), SelectionRules())
    bank.add_object()
    alloc = allocs[0]
    memory = alloc.alloc((C.BankConfig().memory_slots, 1, 16), np.float32, mirrored=True)
    newest = memory.slot(bank.mem_new)
    for t in range(12):  # frame t written to the newest slot; frame t-1 moved to its ring slot first
        moved = bank.commit(t)
        if moved is not None:
            alloc.copy(memory.slot(moved[0]), newest)
        newest.mirror[...] = t
        alloc.upload(newest)
    alloc.download(memory)
    alloc.synchronize()
    held = {t: bank.mem_slot(t) for t in range(7, 12)}
    expect(all((memory.mirror[slot] == t).all() for t, slot in held.items()), "the bank's ring moves on the device")
    event = Event()
    for a in allocs:
        a.close()
    for s in streams:
        s.close()
    event.close()
    expect(all(a.allocated == 0 and a.pinned_allocated == 0 for a in allocs), "streams, events, memory destroyed")


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
        expect(not problems, f"{precision} stream {i}: one CUDA graph per object count, replayed " + "; ".join(problems))
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sam2rt.benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None, help="work directory (default: a temporary one)")
    p.add_argument("--model", type=Path, default=None, help="an exported FP32 model (default: export a tiny one)")
    p.add_argument("--video", type=Path, default=DATA / "videos" / "bedroom.mp4", help="a clip of >= 80 frames")
    p.add_argument("--frames", type=int, default=90, help="frames of the clip to track (>= 80)")
    p.add_argument("--json", type=Path, default=None, help="write the report here (default OUT/gpu_check.json)")
    p.add_argument("--skip-trt", action="store_true", help="only the CUDA layer (exits 3: not everything ran)")
    args = p.parse_args(argv)
    report: dict = {"status": "incomplete"}
    try:
        from sam2rt.runtime.backends.cuda import device_properties

        report["gpu"] = device_properties()[0]
    except Sam2rtError as e:
        print(f"gpu_check: NOTHING CHECKED (exit 3): no usable CUDA GPU here: {e}", file=sys.stderr)
        return 3
    with tempfile.TemporaryDirectory() as tmp:
        work = args.out or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        code = _run(args, work, report)
        report["status"] = {0: "passed", 1: "failed", 3: "incomplete"}[code]
        out = args.json or work / "gpu_check.json"
        out.write_text(json.dumps(report, indent=2, default=str))
        print(f"report: {out}")
    return code


def _run(args: argparse.Namespace, work: Path, report: dict) -> int:
    try:
        print("== CUDA layer (cuda-python)")
        cuda_layer()
        cuda_extras()
        report["cuda_layer"] = "passed"
        if args.skip_trt:
            print("gpu_check: INCOMPLETE (exit 3): only the CUDA layer was checked (--skip-trt)", file=sys.stderr)
            return 3
        if importlib.util.find_spec("tensorrt") is None:
            print("gpu_check: INCOMPLETE (exit 3): TensorRT is not installed, only the CUDA layer was checked "
                  "(docs/gpu.md: which extra to install)", file=sys.stderr)
            return 3
        code = tensorrt_stack(work, args.model, args.video, args.frames, report)
    except (CheckFailed, Sam2rtError) as e:
        print(f"gpu_check FAILED: {e}", file=sys.stderr)
        report["failure"] = str(e)
        return 1
    if code == 0:
        print("gpu_check: all checks passed")
    return code


if __name__ == "__main__":
    sys.exit(main())
