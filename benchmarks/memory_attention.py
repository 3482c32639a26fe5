"""Memory attention on ONNX Runtime CPU: only the valid slots bound vs the whole bank bound, and two exports
(attention forms) side by side, in one process.

    python -m sam2rt.benchmarks.memory_attention MODEL_DIR [MODEL_DIR ...] [--valid 3 7 10] [--repeats 5]
        [--iters 5] [--threads 0] [--json OUT]

For each model and each count V of valid memories (3: the first frames of a stream; 7: steady state with one
conditioning frame; 10: a full bank), memory attention runs for one object two ways per repeat, interleaved
with everything else so all see the same machine load: "all slots" binds the bank's M memory and P pointer
slots with only the first V memories (and 2V pointers) valid, as every frame did before; "valid prefix"
binds just those slots, as the runtime does now (``BankInputs.feeds``, ``device_bank.bind_prefix``). The two
outputs are compared too (masked keys get weight exactly 0: they agree to float rounding). Times are the
median of ``iters`` calls per repeat, then the median over repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sam2rt.benchmarks.report import machine_info, repeated
from sam2rt.manifest import load_manifest
from sam2rt.runtime.backends import load_runners


def bank_feeds(M: int, P: int, valid: int, hw: int, seed: int = 0) -> dict[str, np.ndarray]:
    """One object's bank inputs with M memory / P pointer slots: the first ``valid`` memories valid (slot 0 the
    conditioning frame, temporal position 6) and the first ``min(2 * valid, P)`` pointers."""
    rng = np.random.default_rng(seed)
    ptrs = min(2 * valid, P)
    return {
        "memory": rng.standard_normal((M, 1, hw, 64), np.float32),
        "memory_valid": (np.arange(M) < valid)[:, None],
        "memory_tpos": np.array([6] + [i % 6 for i in range(M - 1)], np.int32)[:, None],
        "obj_ptrs": rng.standard_normal((P, 1, 256), np.float32),
        "obj_ptr_valid": (np.arange(P) < ptrs)[:, None],
        "obj_ptr_tpos": (np.arange(P, dtype=np.float32) / 15)[:, None],
    }


def prefix(feeds: dict[str, np.ndarray], m: int, p: int) -> dict[str, np.ndarray]:
    """The same feeds with only the first m memory and p pointer slots (the valid prefix)."""
    return {k: (v[:m] if k.startswith("memory") else v[:p]) if k != "vision_feat" else v for k, v in feeds.items()}


def _median_ms(runner: Any, feeds: dict[str, np.ndarray], iters: int) -> float:
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        runner.run(feeds)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def run(model_dirs: Sequence[str | Path], valid: Sequence[int] = (3, 7, 10), repeats: int = 5, iters: int = 5,
        threads: int = 0) -> dict[str, Any]:
    """Measure; returns a JSON-ready dict: per model and valid count, both ways (ms), speedup, max |diff|."""
    machine = machine_info()  # the load average before the runs
    models = []
    for d in model_dirs:
        manifest = load_manifest(d)
        models.append((str(d), manifest, load_runners(d, threads=threads)["memory_attention"]))
    sizes = {m.image_size for _, m, _ in models}
    assert len(sizes) == 1, f"compare models of one image size, got {sorted(sizes)}"
    size = sizes.pop()
    h = size // 16
    vision = np.random.default_rng(1).standard_normal((1, 256, h, h), np.float32)
    cases: dict[tuple[str, int], dict[str, Any]] = {}
    for name, manifest, runner in models:
        M, P = manifest.bank.memory_slots, manifest.bank.ptr_slots
        for v in valid:
            full = {"vision_feat": vision, **bank_feeds(M, P, v, h * h)}
            cut = prefix(full, v, min(2 * v, P))
            a, b = runner.run(full)["conditioned_feat"], runner.run(cut)["conditioned_feat"]  # also warm-up
            cases[name, v] = {"runner": runner, "full": full, "cut": cut, "all": [], "prefix": [],
                              "diff": float(np.abs(a - b).max()), "M": M, "P": P}
    for _ in range(repeats):  # interleaved: every case sees the same machine load
        for case in cases.values():
            case["all"].append(_median_ms(case["runner"], case["full"], iters))
            case["prefix"].append(_median_ms(case["runner"], case["cut"], iters))
    result: dict[str, Any] = {"machine": machine, "image_size": size, "objects": 1, "repeats": repeats,
                              "iters": iters, "threads": threads, "models": {}}
    for (name, v), case in cases.items():
        entry = result["models"].setdefault(name, {"attention": _form(name), "M": case["M"], "P": case["P"],
                                                   "valid": {}})
        a, c = repeated(case["all"]), repeated(case["prefix"])
        entry["valid"][str(v)] = {"all_slots_ms": a, "valid_prefix_ms": c, "speedup": a["median"] / c["median"],
                                  "max_abs_diff": case["diff"]}
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    return result


def _form(model_dir: str) -> str:
    return load_manifest(model_dir).raw.get("exporter", {}).get("attention", "cpu (exported before the option)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dirs", nargs="+")
    parser.add_argument("--valid", type=int, nargs="+", default=[3, 7, 10])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = run(args.model_dirs, args.valid, args.repeats, args.iters, args.threads)
    m = result["machine"]
    print(f"{m['cpu']}, {m['usable_cores']} cores, load {m['loadavg_start']} -> {m['loadavg_end']}, "
          f"{result['image_size']} px, 1 object")
    for name, entry in result["models"].items():
        for v, case in entry["valid"].items():
            print(f"{name} ({entry['attention']}): {v:>2} valid: all {entry['M']} slots "
                  f"{case['all_slots_ms']['median']:.1f} ms, valid prefix {case['valid_prefix_ms']['median']:.1f} ms "
                  f"({case['speedup']:.2f}x), max |diff| {case['max_abs_diff']:.1e}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
