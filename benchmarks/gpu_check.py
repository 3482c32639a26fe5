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
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np

from sam2rt.benchmarks.live_check import CheckFailed, expect
from sam2rt.errors import Sam2rtError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sam2rt.benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None, help="work directory (default: a temporary one)")
    p.add_argument("--model", type=Path, default=None, help="an exported FP32 model (default: export a tiny one)")
    p.add_argument("--video", type=Path, default=DATA / "videos" / "bedroom.mp4", help="a clip of >= 80 frames")
    p.add_argument("--frames", type=int, default=90, help="frames of the clip to track (>= 80)")
    p.add_argument("--json", type=Path, default=None,
                   help="write the report here (default OUT/gpu_check.json, or ./gpu_check.json without --out)")
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
        out = args.json or (args.out / "gpu_check.json" if args.out else Path("gpu_check.json"))
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
        from sam2rt.benchmarks.gpu_check_trt import tensorrt_stack

        code = tensorrt_stack(work, args.model, args.video, args.frames, report)
    except (CheckFailed, Sam2rtError) as e:
        print(f"gpu_check FAILED: {e}", file=sys.stderr)
        report["failure"] = str(e)
        return 1
    except Exception as e:  # an API the bindings do not have, a crash in a library: a failure, reported
        traceback.print_exc()
        print(f"gpu_check FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        report["failure"] = f"{type(e).__name__}: {e}"
        return 1
    if code == 0:
        print("gpu_check: all checks passed")
    return code


if __name__ == "__main__":
    sys.exit(main())
