"""One-command check of the GPU stack: ``python -m sam2rt.benchmarks.gpu_check [--out DIR] [--skip-trt]``.

On any CUDA machine with cuda-python (TensorRT not needed) it exercises ``sam2rt.runtime.backends.cuda`` for real:
device and pinned allocations, copies up and down with their values checked, one stream, event timing, a
"tracking step" of device copies (standing in for engines) captured as a CUDA graph and replayed with new
inputs, and two sessions in a row (buffers freed and reallocated: the first session's graphs must not be
replayed, and the second session's values must be right). Where TensorRT is installed too, it exports a small
model, builds its engines, checks the postprocessing engine's masks against the host's ``threshold_resize``
and runs ``sam2rt verify --backend trt`` and ``sam2rt bench --backend trt``.
Exit status 0 when everything ran and matched, 1 on a wrong value or failed command, 2 without a CUDA GPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sam2rt.errors import Sam2rtError


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

        for step in range(6):  # keys 0, 1: run, capture, then replays
            slot = step % 2
            bufs["x"].mirror[0] = 100 * session + step
            cache.step((slot,), lambda s=slot: enqueue(s))
            stream.synchronize()
            expect(bufs["out"].mirror[1, 0] == 100 * session + step,
                   f"session {session}, step {step}: value through the {'replayed' if step >= 4 else 'run'} step")
        expect(cache.replays >= 2 * (session + 1) and len(cache) == 2, f"session {session}: 2 graphs, replayed")
        cache.drop()  # a new session: buffers go, graphs with them
        for b in bufs.values():
            alloc.free(b)
        expect(cache.generation == gen + 1 and len(cache) == 0, f"session {session}: graphs dropped with buffers")
    alloc.close()


def tensorrt_stack(work: Path) -> None:
    """Export a small model, build its engines, verify and bench on TensorRT (CLI, as a user would)."""
    data = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos" / "bedroom_frames"
    model = work / "tiny256"
    prompts = work / "prompts.json"
    prompts.write_text('[{"frame": 0, "obj_id": 1, "points": [[420, 260]], "labels": [1]}]')
    commands = [
        ["export", "--model", "sam2.1_hiera_tiny", "--image-size", "256", "--random-weights", "--out", str(model)],
        ["build", str(model)],
        ["verify", "--model", str(model), "--random-weights", "--video", str(data), "--prompts", str(prompts),
         "--frames", "16", "--backend", "trt"],
        ["bench", "--model", str(model), "--backend", "trt", "--video", str(data), "--frames", "30",
         "--json", str(work / "bench.json")],
    ]
    for args in commands:
        print("$ sam2rt " + " ".join(args), flush=True)
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "sam2rt", *args])
        expect(done.returncode == 0, f"sam2rt {args[0]} ({time.perf_counter() - t0:.1f} s)")
        if args[0] == "build":
            postprocess_engine(model)


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
    p.add_argument("--skip-trt", action="store_true", help="only the CUDA layer, even where TensorRT is installed")
    args = p.parse_args(argv)
    try:
        from sam2rt.runtime.backends.cuda import device_properties

        device_properties()
    except Sam2rtError as e:
        print(f"gpu_check: no usable CUDA GPU here, nothing checked: {e}", file=sys.stderr)
        return 2
    try:
        print("== CUDA layer (cuda-python)")
        cuda_layer()
        if args.skip_trt:
            return 0
        if importlib.util.find_spec("tensorrt") is None:
            print("== TensorRT: not installed, skipped (pip install \"sam2rt[trt-cu12]\" or JetPack's TensorRT)")
            return 0
        print("== TensorRT stack")
        with tempfile.TemporaryDirectory() as tmp:
            tensorrt_stack(args.out or Path(tmp))
    except (CheckFailed, Sam2rtError) as e:
        print(f"gpu_check FAILED: {e}", file=sys.stderr)
        return 1
    print("gpu_check: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
