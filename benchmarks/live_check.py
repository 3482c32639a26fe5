"""The live tracker on TensorRT against the live tracker on ONNX Runtime CPU: the comparison ``gpu_check`` runs.

Any two ``StreamTracker`` s go through the same frames and the same script (objects added at the start and
mid-stream, a correction, a removal) side by side; per frame and object the max |low-res logit difference|
and the IoU of the masks at video size (on TensorRT made by the postprocessing engine, ``output="result"``)
are checked against a precision's tolerance, and the device tracker's CUDA graphs are counted (at most one
capture per object count, replays on most frames). Numpy only: tests run it on CPU with a fake TensorRT.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np


class CheckFailed(Exception):
    """A value read back from the GPU was not what was expected."""


def expect(ok: bool, what: str) -> None:
    """Print ``what`` as passed, or raise CheckFailed(what)."""
    if not ok:
        raise CheckFailed(what)
    print(f"  ok  {what}")


@dataclass(frozen=True)
class Tolerance:
    """What a device tracker may differ by from ONNX Runtime CPU on the same export, per frame and object.

    max_logit: max |low-res logit difference|; min_iou: IoU of the video-size masks (objects whose masks are
    both smaller than ``small`` pixels are compared by area instead: IoU of a few pixels is noise).
    """

    max_logit: float
    min_iou: float
    small: int = 64


# FP32: TensorRT with TF32 off sums in other orders than ONNX Runtime CPU (1e-6 relative per layer), and
# tracking feeds each frame's result back through the memory bank. FP16 engines against the same FP16 graphs
# on ONNX Runtime CPU (which runs many FP16 ops in FP32): the documented FP16 drop is IoU > 0.998 against FP32.
TOLERANCES = {"fp32": Tolerance(max_logit=0.05, min_iou=0.99), "fp16": Tolerance(max_logit=1.0, min_iou=0.95)}

# frame -> actions; points are fractions of (width, height). 2 objects from frame 0, a new one on frame 30,
# a correction (negative click added) on frame 45, a removal on frame 60: count 2 -> 3 -> 2.
SCRIPT: dict[int, list[tuple]] = {
    0: [("points", 1, [[0.44, 0.48]], [1]), ("box", 2, [0.10, 0.55, 0.35, 0.95])],
    30: [("points", 3, [[0.75, 0.30]], [1])],
    45: [("correct", 1, [[0.50, 0.40]], [0])],
    60: [("remove", 2)],
}


def apply(tracker: Any, frame_idx: int, action: tuple, size: tuple[int, int]) -> None:
    """One scripted prompt on ``tracker``'s current frame; ``size`` is the frame's (H, W)."""
    H, W = size
    kind, obj = action[0], action[1]
    if kind == "points":
        tracker.add_new_prompt(frame_idx, obj, points=np.array(action[2]) * [W, H], labels=action[3])
    elif kind == "correct":
        tracker.add_new_prompt(frame_idx, obj, points=np.array(action[2]) * [W, H], labels=action[3],
                               clear_old_points=False)
    elif kind == "box":
        tracker.add_new_prompt(frame_idx, obj, bbox=np.array(action[2]) * [W, H, W, H])
    elif kind == "remove":
        tracker.remove_object(obj)
    else:
        raise ValueError(f"unknown action {kind!r}")


def count_changes(script: dict[int, list[tuple]]) -> int:
    """How often the object count changes in ``script`` (adds and removals after frame 0)."""
    return sum(1 for t, actions in script.items() if t > 0 for a in actions if a[0] in ("points", "box", "remove"))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int(np.count_nonzero(a | b))
    return 1.0 if union == 0 else int(np.count_nonzero(a & b)) / union


def compare_frame(device: Any, host: Any, tol: Tolerance) -> tuple[list[dict], list[str]]:
    """Rows (obj, max logit diff, IoU) and failures for one frame's two TrackResults."""
    rows, failures = [], []
    if device.obj_ids != host.obj_ids:
        return rows, [f"frame {device.frame_idx}: objects {device.obj_ids} on the device, {host.obj_ids} on the host"]
    for k, obj in enumerate(host.obj_ids):
        diff = float(np.abs(device.low_res_logits[k] - host.low_res_logits[k]).max())
        a, b = device.masks[k].astype(bool), host.masks[k].astype(bool)
        small = max(a.sum(), b.sum()) < tol.small
        score = iou(a, b) if not small else 1.0 - abs(int(a.sum()) - int(b.sum())) / tol.small
        rows.append({"frame": device.frame_idx, "obj": obj, "max_logit_diff": diff, "iou": score})
        if diff > tol.max_logit or score < tol.min_iou:
            failures.append(f"frame {device.frame_idx} object {obj}: max |logit diff| {diff:.3g} (tolerance "
                            f"{tol.max_logit}), IoU {score:.4f} (tolerance {tol.min_iou})")
    return rows, failures


def run_pairs(pairs: list[tuple[Any, Any]], clips: list[list[np.ndarray]], script: dict[int, list[tuple]],
              tol: Tolerance) -> list[dict[str, Any]]:
    """Drive each (device tracker, host tracker) pair through its clip and ``script`` side by side, the pairs
    interleaved frame by frame (several streams of one model at once).

    Returns per pair {"rows": per frame and object, "failures": messages (empty: within tolerance), "frames": n,
    "track_ms": the device tracker's per-call milliseconds}.
    """
    results = [{"rows": [], "failures": [], "frames": 0, "track_ms": []} for _ in pairs]
    for t in range(max(len(c) for c in clips)):
        for (device, host), clip, result in zip(pairs, clips, results):
            if t >= len(clip):
                continue
            frame = clip[t]
            if t == 0:
                for tracker in (device, host):
                    tracker.load_first_frame(frame)
            else:
                start = time.perf_counter()
                a = device.track(frame, output="result")
                result["track_ms"].append((time.perf_counter() - start) * 1e3)
                rows, failures = compare_frame(a, host.track(frame, output="result"), tol)
                result["rows"] += rows
                result["failures"] += failures
            for action in script.get(t, []):
                for tracker in (device, host):
                    apply(tracker, t, action, frame.shape[:2])
            result["frames"] += 1
    return results


def check_graphs(executor: Any, script: dict[int, list[tuple]], frames: int) -> list[str]:
    """The device executor's graph counts: captured at least once, at most once per object count (plus the
    first), replayed on most frames. Returns failures."""
    graphs = getattr(executor, "graphs", None)
    if graphs is None:
        return ["the device tracker's executor has no CUDA graphs"]
    limit = count_changes(script) + 1
    failures = []
    if not 1 <= graphs.captures <= limit:
        failures.append(f"{graphs.captures} CUDA graph captures; expected 1..{limit} (one per object count)")
    if graphs.replays < frames // 2:
        failures.append(f"{graphs.replays} graph replays in {frames} frames; expected most frames to replay")
    return failures


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """Worst values and latency percentiles of a ``run_pair`` result (the JSON report's entry)."""
    rows, ms = result["rows"], np.array(result["track_ms"][5:] or [np.nan])
    return {"frames": result["frames"], "objects_compared": len(rows),
            "max_logit_diff": max((r["max_logit_diff"] for r in rows), default=None),
            "min_iou": min((r["iou"] for r in rows), default=None),
            "track_p50_ms": float(np.percentile(ms, 50)), "track_p99_ms": float(np.percentile(ms, 99)),
            "failures": result["failures"][:20], "failure_count": len(result["failures"])}
