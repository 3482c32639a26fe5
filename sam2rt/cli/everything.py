"""``sam2rt segment --everything`` and ``sam2rt track --everything``: "segment everything" on the command line.

``add_generator_args`` adds the official generator's options (``--points-per-side`` ...) to a parser;
``generator_options`` reads them back as ``AutomaticMaskGenerator`` keyword arguments. ``segment_everything``
writes the masks of one image as a PNG label image (0 background, i = annotation i; 16-bit when there are
more than 255 masks; smaller masks drawn over larger ones), a COCO-style JSON beside it (OUT_STEM.json) and an
overlay (OUT_STEM_overlay.png). Files are written to temporary names and renamed, so a failure leaves none.
numpy, OpenCV and the runtime are imported inside the functions, so ``sam2rt --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from sam2rt.errors import Sam2rtError

# flag -> (AutomaticMaskGenerator keyword, type, official default, help)
_OPTIONS: dict[str, tuple[str, type, Any, str]] = {
    "--points-per-side": ("points_per_side", int, 32, "an N x N grid of one-click prompts"),
    "--points-per-batch": ("points_per_batch", int, 64, "prompts per mask decoder call"),
    "--pred-iou-thresh": ("pred_iou_thresh", float, 0.8, "keep masks whose predicted IoU is above this"),
    "--stability-score-thresh": ("stability_score_thresh", float, 0.95, "keep masks at least this stable"),
    "--stability-score-offset": ("stability_score_offset", float, 1.0, "logit shift of the stability score"),
    "--mask-threshold": ("mask_threshold", float, 0.0, "logits above this are mask pixels"),
    "--box-nms-thresh": ("box_nms_thresh", float, 0.7, "box IoU above which duplicates are dropped"),
    "--crop-n-layers": ("crop_n_layers", int, 0, "also segment crops: layer i has (2**i)**2 crops"),
    "--crop-nms-thresh": ("crop_nms_thresh", float, 0.7, "box IoU for duplicates between crops"),
    "--crop-overlap-ratio": ("crop_overlap_ratio", float, 512 / 1500, "crop overlap, fraction of the short side"),
    "--crop-n-points-downscale-factor": ("crop_n_points_downscale_factor", int, 1,
                                         "layer i uses points-per-side / factor**i points per side"),
    "--min-mask-region-area": ("min_mask_region_area", int, 0, "fill holes / remove islands up to this area"),
}


def add_generator_args(p: argparse.ArgumentParser) -> None:
    """The official ``SAM2AutomaticMaskGenerator`` options as flags (official defaults)."""
    g = p.add_argument_group("segment everything (--everything; official SAM2AutomaticMaskGenerator options)")
    for flag, (_, kind, default, text) in _OPTIONS.items():
        g.add_argument(flag, type=kind, default=default, help=f"{text} (default {default:.4g})")
    g.add_argument("--use-m2m", action="store_true", help="refine each mask once with its own logits")
    g.add_argument("--single-mask", action="store_true", help="one mask per prompt (multimask_output=False)")


def generator_options(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed flags as ``AutomaticMaskGenerator`` keyword arguments."""
    options = {name: getattr(args, flag[2:].replace("-", "_")) for flag, (name, *_) in _OPTIONS.items()}
    return {**options, "use_m2m": args.use_m2m, "multimask_output": not args.single_mask}


def label_image(records: list[dict[str, Any]], hw: tuple[int, int]):
    """(H, W) uint8 (uint16 above 255 masks) label image: pixel = 1 + index of the smallest mask covering it."""
    import numpy as np

    from sam2rt.runtime.amg_utils import decode_segmentation

    labels = np.zeros(hw, np.uint8 if len(records) < 256 else np.uint16)
    for i in sorted(range(len(records)), key=lambda i: -records[i]["area"]):  # large first, small on top
        labels[decode_segmentation(records[i]["segmentation"])] = i + 1
    return labels


def coco_json(records: list[dict[str, Any]], image: Path, hw: tuple[int, int]) -> dict[str, Any]:
    """COCO-style results: one image, one category "object", one annotation per mask (RLE, area, bbox, scores)."""
    from sam2rt.runtime.amg_utils import coco_rle, decode_segmentation

    annotations = []
    for i, r in enumerate(records):
        seg = r["segmentation"]
        if not (isinstance(seg, dict) and isinstance(seg.get("counts"), str)):
            seg = coco_rle(decode_segmentation(seg))
        annotations.append({"id": i + 1, "image_id": 1, "category_id": 1, "segmentation": seg, "area": r["area"],
                            "bbox": r["bbox"], "iscrowd": 0, "predicted_iou": r["predicted_iou"],
                            "stability_score": r["stability_score"], "point_coords": r["point_coords"],
                            "crop_box": r["crop_box"]})
    return {"images": [{"id": 1, "file_name": image.name, "height": hw[0], "width": hw[1]}],
            "categories": [{"id": 1, "name": "object"}], "annotations": annotations}


def everything_paths(out: Path) -> dict[str, Path]:
    """The three files ``segment --everything`` writes for ``--out``."""
    return {"labels": out, "json": out.with_suffix(".json"), "overlay": out.with_name(f"{out.stem}_overlay.png")}


def segment_everything(args: argparse.Namespace, rgb: Any) -> int:
    """Run the generator on ``rgb`` ((H, W, 3) uint8) and write the label PNG, the JSON and the overlay."""
    import cv2
    import numpy as np

    from sam2rt.outputs import check_writable_file, make_parents
    from sam2rt.runtime.amg_utils import decode_segmentation
    from sam2rt.runtime.automatic import AutomaticMaskGenerator
    from sam2rt.runtime.imageops import overlay

    paths = everything_paths(args.out)
    for path in paths.values():
        check_writable_file(path, "--out")
    generator = AutomaticMaskGenerator(args.model, backend=args.backend, threads=args.threads, output_mode="coco_rle",
                                       progress=True, **generator_options(args))
    records = generator.generate(rgb)
    hw = rgb.shape[:2]
    masks = np.zeros((len(records), *hw), bool)  # (K, H, W)
    for mask, record in zip(masks, records):
        mask[...] = decode_segmentation(record["segmentation"])
    drawn = overlay(rgb, masks, list(range(1, len(records) + 1)))
    make_parents(args.out)
    with tempfile.TemporaryDirectory(dir=args.out.parent, prefix=".sam2rt-everything-") as tmp:
        staged = {k: Path(tmp) / p.name for k, p in paths.items()}
        ok = cv2.imwrite(str(staged["labels"]), label_image(records, hw))
        ok &= cv2.imwrite(str(staged["overlay"]), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
        if not ok:
            raise Sam2rtError(f"cannot write PNG files in {args.out.parent}; check its free space and permissions")
        staged["json"].write_text(json.dumps(coco_json(records, args.image, hw)))
        for key, path in paths.items():
            os.replace(staged[key], path)
    print(f"{len(records)} masks; wrote {paths['labels']} (labels), {paths['json']} (COCO), "
          f"{paths['overlay']} (overlay)")
    if not records:
        print("no mask passed the filters; lower --pred-iou-thresh / --stability-score-thresh")
    return 0


# ---- track --everything --------------------------------------------------------------------------------
def add_seed_args(p: argparse.ArgumentParser) -> None:
    """``track --everything``: the generator's options and the filter that picks the objects to track."""
    p.add_argument("--everything", action="store_true",
                   help="start from segment everything on --everything-frame: its masks become the objects")
    p.add_argument("--everything-frame", type=int, default=0, help="frame to segment (default 0)")
    p.add_argument("--min-area", type=int, default=0, help="--everything: smallest mask area kept, pixels")
    p.add_argument("--min-score", type=float, default=0.0, help="--everything: smallest predicted IoU kept")
    p.add_argument("--max-objects", type=int, default=None,
                   help="--everything: most objects kept (best predicted IoU first); never more than the model's "
                        "object limit")
    add_generator_args(p)


def seed_from_args(args: argparse.Namespace) -> dict[str, Any] | None:
    """The ``track --everything`` settings as one dict (None without --everything)."""
    if not args.everything:
        return None
    return {"frame": args.everything_frame, "min_area": args.min_area, "min_score": args.min_score,
            "max_objects": args.max_objects, "options": generator_options(args)}


def seed_everything(predictor: Any, state: dict[str, Any], seed: dict[str, Any], model: Path, backend: str,
                    threads: int) -> list[int]:
    """Segment everything on ``seed["frame"]`` and add the kept masks as objects; raises when none is kept."""
    from sam2rt.runtime.automatic import AutomaticMaskGenerator
    from sam2rt.runtime.seeding import seed_video

    frame = seed["frame"]
    if not 0 <= frame < state["num_frames"]:
        raise Sam2rtError(f"--everything-frame {frame} is outside the video (frames 0..{state['num_frames'] - 1})")
    generator = AutomaticMaskGenerator(model, backend=backend, threads=threads, progress=True, **seed["options"])
    records = generator.generate(state["frames"][frame])
    ids = seed_video(predictor, state, frame, records, min_area=seed["min_area"], min_score=seed["min_score"],
                     max_objects=seed["max_objects"])
    print(f"segment everything on frame {frame}: {len(records)} masks, tracking {len(ids)}")
    if not ids and not state["obj_ids"]:
        raise Sam2rtError(f"segment everything kept no mask on frame {frame}, so there is nothing to track; lower "
                          "--pred-iou-thresh / --stability-score-thresh / --min-area / --min-score")
    return ids
