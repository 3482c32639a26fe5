"""Per-graph ONNX Runtime CPU profile: where each graph's time goes, and model directories timed side by side.

``python -m sam2rt.benchmarks.graph_profile --models DIR [DIR ...] --graphs memory_attention --threads 1 2``

For each graph and thread count, every model directory's session is called in turn on the same steady-state
feeds (a full bank as the runtime sends it: 1 conditioning + 6 recent memories, 16 object pointers, K
objects), ``calls`` rounds,
so a busy spell on a shared machine hits every variant alike. Two clocks per call: wall time and the
process's CPU time (``time.process_time``: all threads), which is what a loaded machine distorts least.
With ``--profile`` each session also runs under ONNX Runtime's profiler and the node time is summed per
operator type (``Node`` events; fused nodes appear under their fused op type, e.g. ``FusedMatMul``).
Timings here are relative: compare variants within one run, and quote the load average beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnxruntime as ort

from sam2rt import contract as C
from sam2rt.benchmarks.report import machine_info
from sam2rt.manifest import load_manifest
from sam2rt.runtime.backends.ort import session_options

Feeds = dict[str, np.ndarray]
COND_MEMORIES, RECENT_MEMORIES, POINTERS = 1, 6, 16  # what a tracked object attends to in steady state


def steady_feeds(spec: C.GraphSpec, image_size: int, bank: C.BankConfig, objects: int, seed: int = 0,
                 memory_tokens: int | None = None) -> Feeds:
    """Random inputs with the shapes, dtypes and validity of a steady tracking frame (full bank).

    Memory attention gets what the ONNX Runtime path feeds it (``runtime.bank.BankInputs.feeds``): only the
    used slots, 1 conditioning + 6 recent memories and 16 object pointers, all valid. Values are N(0, 1)
    floats, which is all a timing needs (no data-dependent branches in these graphs' kernels).
    """
    rng = np.random.default_rng(seed)
    memories, pointers = min(COND_MEMORIES + RECENT_MEMORIES, bank.memory_slots), min(POINTERS, bank.ptr_slots)
    dims = {**C.resolve_dims(image_size, memory_tokens), "B": objects, "M": memories, "P": pointers, "N": 2}
    feeds: Feeds = {}
    for t in spec.inputs:
        shape = tuple(int(dims[d]) if isinstance(d, str) else d for d in t.shape)
        if t.dtype == "float32":
            feeds[t.name] = rng.standard_normal(shape).astype(np.float32)
        elif t.dtype == "bool":
            feeds[t.name] = np.zeros(shape, bool)
        else:
            feeds[t.name] = np.zeros(shape, np.dtype(t.dtype))
    if spec.name == "memory_attention":
        feeds["memory_valid"][:] = True
        feeds["memory_tpos"][:] = np.arange(memories, dtype=np.int32)[::-1, None]  # 6 = conditioning
        feeds["obj_ptr_valid"][:] = True
        feeds["obj_ptr_tpos"][:] = np.linspace(0, 1, pointers, dtype=np.float32)[:, None]
    elif spec.name == "mask_decoder":
        feeds["point_labels"][:] = np.array([1, -1], np.int32)
        feeds["point_coords"] = (rng.uniform(0, image_size, feeds["point_coords"].shape)).astype(np.float32)
        feeds["multimask"][:] = False
    elif spec.name == "memory_encoder":
        feeds["object_score_logits"][:] = 1.0
    return feeds


def open_session(path: str | Path, threads: int, profile_dir: str | None = None) -> ort.InferenceSession:
    """A CPU session with the runtime's options (``runtime.backends.ort.session_options``)."""
    options = session_options(threads)
    if profile_dir is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(profile_dir) / Path(path).stem)
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def time_side_by_side(sessions: dict[str, ort.InferenceSession], feeds: Feeds, calls: int) -> dict[str, dict]:
    """Each session once per round, in turn, after one warm-up call each; wall and CPU ms per call."""
    for s in sessions.values():
        s.run(None, feeds)
    wall: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    for _ in range(calls):
        for label, s in sessions.items():
            w, c = time.perf_counter(), time.process_time()
            s.run(None, feeds)
            cpu[label].append((time.process_time() - c) * 1e3)
            wall[label].append((time.perf_counter() - w) * 1e3)
    return {label: {"wall_ms": float(np.median(wall[label])), "wall_min_ms": float(np.min(wall[label])),
                    "cpu_ms": float(np.median(cpu[label])), "calls": calls} for label in sessions}


def op_times(profile_json: str | Path, calls: int) -> dict[str, float]:
    """Milliseconds per call spent in each operator type, from an ONNX Runtime profile (warm-up included
    in the file: divided by ``calls + 1``), largest first."""
    events = json.loads(Path(profile_json).read_text())
    per_op: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"] / 1e3 / (calls + 1)
    return dict(sorted(per_op.items(), key=lambda kv: -kv[1]))


def _subdir(parent: str, i: int) -> str:
    path = Path(parent) / str(i)
    path.mkdir(exist_ok=True)
    return str(path)


def profile_graphs(models: Sequence[Path], graphs: Sequence[str], threads: Sequence[int], objects: int = 2,
                   calls: int = 7, profile: bool = False) -> dict[str, Any]:
    """Time (and optionally profile) ``graphs`` of every model directory side by side, per thread count.

    Returns {"machine", "objects", "rows": [{graph, threads, model, precision, wall_ms, cpu_ms, ops?}]}.
    """
    machine = machine_info()  # the load average before the runs; the one after is added at the end
    manifests = [load_manifest(m) for m in models]
    image_size = manifests[0].image_size
    rows = []
    for name in graphs:
        feeds = steady_feeds(C.GRAPHS_BY_NAME[name], image_size, manifests[0].bank, objects,
                             memory_tokens=manifests[0].memory_tokens)
        for n in threads:
            with tempfile.TemporaryDirectory(prefix="sam2rt-profile-") as tmp:
                # one profile folder per model: the same directory given twice must not share a profile file
                sessions = {str(i): open_session(m.graph_path(name), n, _subdir(tmp, i) if profile else None)
                            for i, m in enumerate(manifests)}
                times = time_side_by_side(sessions, feeds, calls)
                for i, m in enumerate(manifests):
                    row = {"graph": name, "threads": n, "model": str(m.directory), "precision": m.precision,
                           **times[str(i)]}
                    if profile:
                        row["ops"] = op_times(sessions[str(i)].end_profiling(), calls)
                    rows.append(row)
    machine["loadavg_end"] = list(os.getloadavg())
    return {"machine": machine, "objects": objects, "rows": rows}


def format_rows(result: dict[str, Any], top: int = 8) -> str:
    """Markdown: one row per graph x threads x model; then the top operator types of each profiled row."""
    m = result["machine"]
    lines = [f"{m['cpu']}, {m['usable_cores']} cores, load average {m['loadavg_start'][0]:.1f} -> "
             f"{m['loadavg_end'][0]:.1f}; {result['objects']} objects, steady-state feeds", "",
             "| graph | threads | model | precision | wall ms (median) | wall ms (min) | CPU ms (median) |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['graph']} | {r['threads'] or 'default'} | {Path(r['model']).name} | {r['precision']} | "
                     f"{r['wall_ms']:.1f} | {r['wall_min_ms']:.1f} | {r['cpu_ms']:.1f} |")
    for r in (r for r in result["rows"] if "ops" in r):
        total = sum(r["ops"].values())
        ops = ", ".join(f"{op} {ms:.1f}" for op, ms in list(r["ops"].items())[:top])
        lines.append(f"\n{r['graph']}, {Path(r['model']).name}, threads {r['threads'] or 'default'}: "
                     f"node time {total:.1f} ms/call: {ops}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, nargs="+", required=True, help="model directories (same image size)")
    p.add_argument("--graphs", nargs="+", default=[g.name for g in C.GRAPHS], choices=[g.name for g in C.GRAPHS])
    p.add_argument("--threads", type=int, nargs="+", default=[0], help="intra-op thread counts (0 = default)")
    p.add_argument("--objects", type=int, default=2)
    p.add_argument("--calls", type=int, default=7, help="rounds; each model once per round")
    p.add_argument("--profile", action="store_true", help="ONNX Runtime profiler: node time per operator type")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    result = profile_graphs(args.models, args.graphs, args.threads, args.objects, args.calls, args.profile)
    print(format_rows(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
