"""Benchmark results: statistics, the machine they ran on, and their JSON, plot and table forms.

``sam2rt.benchmarks.bench`` measures and returns one plain dict (see its module docstring for the
fields); this module summarises samples into it and renders it. Nothing here imports torch or the
runtime; matplotlib is imported only by :func:`plot` (Agg canvas, no pyplot state).
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sam2rt.errors import Sam2rtError

NOISE_LIMIT = 0.20  # (max - min) / median of repeated timings above this is flagged as noisy
VERSIONED = ("numpy", "onnxruntime", "torch", "sam2", "opencv-python-headless")


# --------------------------------------------------------------------------- statistics


def summarize(seconds: Sequence[float]) -> dict[str, float | int]:
    """Latency percentiles of ``seconds`` (one sample per frame) in milliseconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    if ms.size == 0:
        raise Sam2rtError("no steady-state samples to summarise; use more --frames or a smaller --warmup")
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": float(ms.mean()),
            "min_ms": float(ms.min()), "max_ms": float(ms.max()), "samples": int(ms.size)}


def repeated(values: Sequence[float]) -> dict[str, Any]:
    """A metric measured once per repeat: its median, the runs, their spread and the noise flag."""
    runs = [float(v) for v in values]
    median = float(np.median(runs))
    spread = (max(runs) - min(runs)) / median if median > 0 else 0.0
    return {"median": median, "runs": runs, "spread": spread, "noisy": spread > NOISE_LIMIT}


# --------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """Platform, CPU model, cores, Python and library versions (those installed), load average."""
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"platform": platform.platform(), "cpu": _cpu_model(), "logical_cores": os.cpu_count(),
            "usable_cores": usable, "physical_cores": physical_cores(), "python": sys.version.split()[0], "versions": versions,
            "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def load_warning(machine: dict[str, Any]) -> str | None:
    """A warning when the 1-minute load average (at the start or the end of the run) exceeds the usable cores:
    other processes then share the cores with the run, and absolute times are inflated and noisy."""
    loads = [load[0] for load in (machine.get("loadavg_start"), machine.get("loadavg_end")) if load]
    cores = machine.get("usable_cores") or machine.get("logical_cores") or 0
    if not loads or not cores or max(loads) <= cores:
        return None
    return (f"WARNING: load average {max(loads):.1f} is above the {cores} usable cores: other processes share "
            "the CPU with this run, so absolute times are inflated and noisy; compare only numbers measured "
            "side by side in this run (e.g. the speedup vs the official predictor), and re-run on an idle machine")


def physical_cores() -> int | None:
    """Physical cores among the CPUs this process may use (distinct physical id / core id in /proc/cpuinfo)."""
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    cores, cpu, package = set(), None, "0"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = (part.strip() for part in line.partition(":"))
                if key == "processor":
                    cpu = int(value)
                elif key == "physical id":
                    package = value
                elif key == "core id" and (usable is None or cpu in usable):
                    cores.add((package, value))
    except (OSError, ValueError):
        return None
    return len(cores) or None


def threads_text(threads: int, cores: int | None = None) -> str:
    """The intra-op thread setting as the user reads it; ``cores``: physical cores (ONNX Runtime's default)."""
    if threads:
        return f"{threads} intra-op threads"
    count = f": {cores} here" if cores else ""
    return f"ONNX Runtime's default intra-op threads (one per physical core{count})"


def rss_mb() -> float:
    """Current resident set size of this process (from /proc/self/statm), MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (getrusage; KiB on Linux), MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def model_summary(manifest: Any) -> dict[str, Any]:
    """Name, image size, precision, directory and weights source of an exported model (its Manifest)."""
    return {"name": manifest.model_name, "image_size": manifest.image_size, "precision": manifest.precision,
            "directory": str(manifest.directory), "source": manifest.raw.get("source")}


# --------------------------------------------------------------------------- JSON


def write_json(result: dict[str, Any], path: str | Path) -> Path:
    """Write the result as indented JSON (paths as strings); returns the path."""
    path = Path(path)
    path.write_text(json.dumps(result, indent=2, default=str, allow_nan=False) + "\n")
    return path


# --------------------------------------------------------------------------- plot


def require_matplotlib() -> None:
    """Fail before a long run when a plot is asked for and matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise Sam2rtError("--plot needs matplotlib; install it with `pip install matplotlib` "
                          "(or the sam2rt[bench] extra), or drop --plot") from None


def plot(result: dict[str, Any], path: str | Path) -> Path:
    """PNG, two panels: p50 latency per component (whiskers to p90); frames per second vs objects."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.6), dpi=110)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1]})
    names = list(result["components"])
    p50 = np.array([result["components"][n]["p50_ms"] for n in names])
    p90 = np.array([result["components"][n]["p90_ms"] for n in names])
    y = np.arange(len(names))
    left.barh(y, p50, xerr=[np.zeros_like(p50), p90 - p50], color="#4c78a8", capsize=3)
    left.set_yticks(y, names)
    left.invert_yaxis()
    left.set_xlabel("ms per frame (bar: p50, whisker: p90)")
    left.set_title(f"latency per component, {result['config']['objects']} objects, steady state")
    for yi, value, whisker in zip(y, p50, p90):
        left.annotate(f"{value:.1f}", (whisker, yi), xytext=(5, -3), textcoords="offset points", fontsize=8)
    left.set_xlim(right=1.12 * float(p90.max()))

    rows = result["e2e"]["by_objects"]
    objects = [r["objects"] for r in rows]
    right.plot(objects, [r["fps"]["median"] for r in rows], "o-", color="#4c78a8", label="sam2rt, steady state")
    official = result.get("official")
    if official and official.get("speedup_vs_official"):
        k = official["objects"]
        right.plot([k], [1.0 / official["ours_s_per_frame"]], "s", color="#4c78a8", mfc="none",
                   label="sam2rt, official-API session")
        right.plot([k], [1.0 / official["official_s_per_frame"]], "s", color="#e45756",
                   label=f"official, same session ({official['speedup_vs_official']:.1f}x slower)")
    right.set_xticks(objects)
    right.set_xlabel("objects")
    right.set_ylabel("frames per second")
    right.set_ylim(bottom=0)
    right.set_title("throughput vs objects (median of repeats)")
    right.legend(fontsize=8, loc="best")
    fig.suptitle(_headline(result), fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path


# --------------------------------------------------------------------------- table


def _headline(result: dict[str, Any]) -> str:
    m, c, machine = result["model"], result["config"], result["machine"]
    loads = [f"{load[0]:.1f}" for load in (machine.get("loadavg_start"), machine.get("loadavg_end")) if load]
    load_text = f", load avg {' -> '.join(loads)}" if loads else ""
    return (f"{m['name']} @{m['image_size']} {m['precision']}, {c['backend']} on {result['device']['name']} "
            f"({machine['cpu']}, {machine['usable_cores']} cores{load_text}; "
            f"{threads_text(c['threads'], machine.get('physical_cores'))})")


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def format_table(result: dict[str, Any]) -> str:
    """A readable summary of a result dict."""
    c, e2e = result["config"], result["e2e"]
    scope = (f"{c['frames']} frames, {c['objects']} objects, steady state: frames {e2e['steady_from']}.."
             f"{c['frames'] - 1} x {c['repeats']} repeats")
    lines = [_headline(result), scope, ""]
    cols = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "max_ms")
    lines.append(f"{'component':<18}" + "".join(f"{h[:-3] + ' ms':>10}" for h in cols) + f"{'calls':>7}")
    rows = [(name, s, s.get("calls_per_frame")) for name, s in result["components"].items()]
    rows.append(("frame (wall)", e2e["frame_ms"], None))
    for name, s, calls in rows:
        lines.append(f"{name:<18}" + "".join(f"{s[k]:>10.2f}" for k in cols) + f"{_fmt(calls, '.2f'):>7}")
    lines += ["", f"{'objects':<9}{'fps':>8}{'ms/frame':>10}{'spread':>8}  runs (fps)"]
    for row in e2e["by_objects"]:
        fps = row["fps"]
        flag = "  NOISY" if fps["noisy"] else ""
        runs = ", ".join(f"{v:.2f}" for v in fps["runs"])
        lines.append(f"{row['objects']:<9}{fps['median']:>8.2f}{1e3 / fps['median']:>10.1f}"
                     f"{fps['spread'] * 100:>7.0f}%  {runs}{flag}")
    lines.append(f"first frame (init_state + first prompt): {e2e['first_frame_ms']['median']:.1f} ms; "
                 f"add a prompt (click on tracked frame {e2e['add_prompt_frame']}): "
                 f"{e2e['add_prompt_ms']['median']:.1f} ms; model load {e2e['load_s']:.2f} s")
    lines += ["", _memory_text(result["memory"])]
    if result.get("official"):
        lines += ["", _official_text(result["official"])]
    warning = load_warning(result["machine"])
    if warning:
        lines += ["", warning]
    if result.get("noisy"):
        which = ", ".join(result.get("noisy_metrics", [])) or "some metrics"
        lines += ["", (f"WARNING: repeats of {which} differ by more than {NOISE_LIMIT:.0%} (max-min)/median; "
                       "the machine may be busy, treat those numbers with care")]
    return "\n".join(lines)


def _memory_text(memory: dict[str, Any]) -> str:
    text = f"memory: peak RSS {memory['peak_rss_mb']:.0f} MB, current RSS {memory['current_rss_mb']:.0f} MB"
    soak = memory.get("soak")
    if soak:
        text += (f"\nsoak: {soak['frames']} frames (StreamTracker, clip looped) at {soak['fps']:.2f} fps; "
                 f"RSS {soak['rss_ref_mb']:.0f} MB at frame {soak['reference_frame']} -> "
                 f"{soak['rss_end_mb']:.0f} MB at frame {soak['frames']} ({soak['rss_growth_pct']:+.1f} %); "
                 f"tracker state {soak['stored_ref_mb']:.1f} -> {soak['stored_end_mb']:.1f} MB")
    return text


def _official_text(o: dict[str, Any]) -> str:
    iou = o["iou"]
    speed = (f"speedup {o['speedup_vs_official']:.2f}x (propagation only {o['propagate_speedup_vs_official']:.2f}x)"
             if o["speedup_vs_official"] else "speedup not quoted: the results differ (see IoU)")
    states = f" ({o['official_states']})" if o.get("official_states", "one") != "one" else ""
    cpu = (f"\n  process CPU time s/frame official {o['official_cpu_s_per_frame']:.3f}, sam2rt "
           f"{o['ours_cpu_s_per_frame']:.3f}; ratio {o['cpu_speedup_vs_official']:.2f}x (less distorted by other load)"
           if o.get("cpu_speedup_vs_official") else "")
    return (f"official SAM2VideoPredictor, same {o['frames']} JPEG frames, {o['objects']} objects{states}, "
            f"{o['device']}, torch threads {o.get('torch_threads', '?')}, hole filling "
            f"{'on' if o['fill_hole_area'] else 'off'} in both:\n"
            f"  s/frame (init + prompts + propagation) official {o['official_s_per_frame']:.3f}, "
            f"sam2rt {o['ours_s_per_frame']:.3f}; {speed}{cpu}\n"
            f"  IoU vs official: {iou['masks']} frame-object masks, mean {iou['mean']:.6f}, min {iou['min']:.6f}, "
            f"max |logit diff| {iou['max_logit_diff']:.2e} -> {'match' if iou['results_match'] else 'MISMATCH'}"
            + (f"; where both find the object mean {_maybe(iou['mean_both_present'])}, presence disagreements "
               f"{iou['presence_disagreements']}" if "presence_disagreements" in iou else ""))


def _maybe(x: float | None) -> str:
    return "n/a (no such frame)" if x is None else f"{x:.6f}"
