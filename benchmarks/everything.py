"""Segment everything: seconds per image, sam2rt's ``AutomaticMaskGenerator`` (ONNX Runtime CPU) beside the
official ``SAM2AutomaticMaskGenerator`` (PyTorch CPU), same weights, image and options, in one process.

For each exported model folder: build the official model with the weights it was exported from (seeded
random weights or a checkpoint, read from the manifest), run both generators ``--repeats`` times on the image
(after ``--warmup`` untimed runs each) and compare their records (count, matched mask IoU, score differences),
so a speedup is never quoted for different results. The machine (CPU model, cores, load average) goes into
the JSON. Needs torch and the official ``sam2`` (the export extra)::

    python -m sam2rt.benchmarks.everything --model models/tiny512 models/tiny1024 --image truck.jpg \
        --out everything.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from sam2rt.manifest import load_manifest
from sam2rt.runtime.amg_utils import decode_segmentation
from sam2rt.runtime.automatic import AutomaticMaskGenerator


def machine() -> dict[str, Any]:
    """CPU model, cores and load average, for the report."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average": list(os.getloadavg())}


def compare(ours: list[dict], ref: list[dict]) -> dict[str, Any]:
    """Counts, and per official record the best-matching mask of ours from the same prompt point."""
    worst_iou, worst_score = 1.0, 0.0
    for r in ref:
        mask_r = decode_segmentation(r["segmentation"])
        best, diff = 0.0, float("inf")
        for o in ours:
            if np.allclose(o["point_coords"], r["point_coords"], atol=1e-3):
                m = decode_segmentation(o["segmentation"])
                iou = np.logical_and(m, mask_r).sum() / max(np.logical_or(m, mask_r).sum(), 1)
                if iou > best:
                    best, diff = float(iou), max(abs(o["predicted_iou"] - r["predicted_iou"]),
                                                  abs(o["stability_score"] - r["stability_score"]))
        worst_iou, worst_score = min(worst_iou, best), max(worst_score, diff)
    return {"masks": len(ours), "official_masks": len(ref), "min_mask_iou": worst_iou if ref else None,
            "max_score_diff": worst_score if ref else None}


def _timed(fn: Any, repeats: int, warmup: int) -> tuple[list[dict], list[float]]:
    for _ in range(warmup):
        fn()
    seconds, out = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - t0)
    return out, seconds


def bench_model(model_dir: Path, rgb: np.ndarray, options: dict[str, Any], repeats: int, warmup: int,
                threads: int, reference: Path | None) -> dict[str, Any]:
    """Both generators on one model folder; ``reference``: the fp32 folder whose weights the official runs
    (for an int8-cpu folder), default ``model_dir`` itself."""
    import torch

    from sam2rt.benchmarks.official_everything import official_generator, official_generator_cls
    from sam2rt.export.checkpoints import build_model

    manifest = load_manifest(reference or model_dir)
    source = manifest.raw["source"]
    if source.get("random_seed") is None:
        raise SystemExit(f"{model_dir}: exported from a checkpoint; this benchmark rebuilds seeded random weights "
                         "only (export with --random-seed)")
    model = build_model(manifest.model_name, manifest.image_size, random_seed=source["random_seed"])[0]
    ours = AutomaticMaskGenerator(model_dir, threads=threads, **options)
    official = official_generator(official_generator_cls(), model, manifest.image_size, **options)
    ours_out, ours_s = _timed(lambda: ours.generate(rgb), repeats, warmup)
    with torch.inference_mode():
        ref_out, ref_s = _timed(lambda: official.generate(rgb), repeats, warmup)
    row = {"model": str(model_dir), "image_size": manifest.image_size, "precision": load_manifest(model_dir).precision,
           "sam2rt_s_per_image": float(np.median(ours_s)), "official_s_per_image": float(np.median(ref_s)),
           "sam2rt_runs_s": ours_s, "official_runs_s": ref_s, **compare(ours_out, ref_out)}
    row["speedup"] = row["official_s_per_image"] / row["sam2rt_s_per_image"]
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=Path, nargs="+", required=True, help="exported model folders")
    p.add_argument("--reference", type=Path, nargs="*", default=None,
                   help="per --model, the fp32 folder whose weights the official generator uses (int8-cpu models)")
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of each generator first")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads per graph (0: its default)")
    p.add_argument("--options", default="{}", help='generator options as JSON, e.g. \'{"pred_iou_thresh": 0.45}\' '
                                                   "(default: the official defaults, 32x32 grid)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = p.parse_args(argv)
    from PIL import Image

    rgb = np.array(Image.open(args.image).convert("RGB"))
    options = json.loads(args.options)
    refs = args.reference or [None] * len(args.model)
    import torch

    report = {"machine": {**machine(), "torch_threads": torch.get_num_threads()}, "image": str(args.image),
              "image_hw": list(rgb.shape[:2]), "options": options, "repeats": args.repeats,
              "warmup": args.warmup, "results": []}
    for model_dir, ref in zip(args.model, refs):
        row = bench_model(model_dir, rgb, options, args.repeats, args.warmup, args.threads, ref)
        report["results"].append(row)
        print(f"{model_dir} ({row['image_size']} px, {row['precision']}): sam2rt {row['sam2rt_s_per_image']:.2f} s, "
              f"official {row['official_s_per_image']:.2f} s per image ({row['speedup']:.2f}x); masks "
              f"{row['masks']} vs {row['official_masks']}, min IoU {row['min_mask_iou']}, "
              f"max score diff {row['max_score_diff']}", flush=True)
    report["machine"]["load_average_end"] = list(os.getloadavg())
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
