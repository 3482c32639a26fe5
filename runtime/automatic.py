"""``AutomaticMaskGenerator``: the official ``SAM2AutomaticMaskGenerator`` ("segment everything") on our graphs.

Same options, defaults and output records as the official class. A grid of one-click prompts goes through
the mask decoder ``points_per_batch`` at a time; masks are kept when their predicted IoU and stability pass
the thresholds and they do not touch a crop edge inside the image, then de-duplicated by box NMS within each
crop and (with ``crop_n_layers`` > 0) between crops. Imports no torch.

What differs from the official code, without changing its results:
- the predicted-IoU filter runs before the low-res masks are resized to the image (the official resizes all
  ``points_per_batch x 3`` masks first), and only survivors are resized, a few at a time;
- masks are kept as their bounding-box patch until the records are written (the official keeps RLEs);
- NMS is OpenCV's ``NMSBoxes`` (same greedy rule and IoU as torchvision's ``batched_nms``).
``min_mask_region_area`` > 0 fills holes and removes sprinkles of at most that area in the low-res logits,
which is what the official predictor does where its CUDA extension is built (on CPU it warns and skips it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sam2rt.errors import Sam2rtError
from sam2rt.runtime import amg_utils as U
from sam2rt.runtime.image_predictor import ImagePredictor
from sam2rt.runtime.image_transforms import LOW_RES_CLAMP, check_image, transform_coords

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
_MASK_PIXELS = 1 << 26  # full-size mask pixels made at once (64 MB of bool)


@dataclass
class _Found:
    """Masks kept so far: per mask its box (x0, y0, x1, y1 inclusive, image pixels), predicted IoU,
    prompt point, stability score, crop box and the mask inside its box (a bool patch)."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    iou: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    stability: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    crop_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    patches: list[np.ndarray] = field(default_factory=list)

    def select(self, keep: np.ndarray) -> _Found:
        return _Found(self.boxes[keep], self.iou[keep], self.points[keep], self.stability[keep],
                      self.crop_boxes[keep], [self.patches[i] for i in np.arange(len(self.iou))[keep]])

    def extend(self, other: _Found) -> None:
        for name in ("boxes", "iou", "points", "stability", "crop_boxes"):
            setattr(self, name, np.concatenate([getattr(self, name), getattr(other, name)]))
        self.patches += other.patches


class AutomaticMaskGenerator:
    """Masks for everything in an image (official ``SAM2AutomaticMaskGenerator`` API and defaults).

    Args:
        model_dir, backend, threads, engine_dir: the model, as for :class:`~sam2rt.ImagePredictor`.
        points_per_side: an n x n grid of one-click prompts (None: give ``point_grids``).
        points_per_batch: prompts per mask decoder call.
        pred_iou_thresh: keep masks whose predicted IoU is above it (0 disables the filter).
        stability_score_thresh: keep masks whose stability score is at least this (0 disables it).
        stability_score_offset: the logit shift of the stability score.
        mask_threshold: logits above it are mask pixels.
        box_nms_thresh: box IoU above which a worse mask of the same crop is dropped.
        crop_n_layers: also run on crops; layer i has (2**i)**2 crops.
        crop_nms_thresh: box IoU above which a mask from a larger crop is dropped.
        crop_overlap_ratio: overlap of the first crop layer's crops, a fraction of the short side.
        crop_n_points_downscale_factor: layer i uses points_per_side / factor**i points per side.
        point_grids: explicit (N, 2) grids in [0, 1], one per layer (exclusive with points_per_side).
        min_mask_region_area: fill holes and remove islands up to this area (low-res pixels); 0 disables.
        output_mode: "binary_mask" ((H, W) bool), "uncompressed_rle" or "coco_rle" (needs pycocotools).
        use_m2m: refine each mask once with its own low-res logits as the mask prompt.
        multimask_output: three masks per prompt (else one).
        progress: show a progress bar over the decoder calls.
    """

    def __init__(self, model_dir: str | Path, backend: str = "ort", threads: int = 0,
                 engine_dir: str | Path | None = None, points_per_side: int | None = 32, points_per_batch: int = 64,
                 pred_iou_thresh: float = 0.8, stability_score_thresh: float = 0.95,
                 stability_score_offset: float = 1.0, mask_threshold: float = 0.0, box_nms_thresh: float = 0.7,
                 crop_n_layers: int = 0, crop_nms_thresh: float = 0.7, crop_overlap_ratio: float = 512 / 1500,
                 crop_n_points_downscale_factor: int = 1, point_grids: list[np.ndarray] | None = None,
                 min_mask_region_area: int = 0, output_mode: str = "binary_mask", use_m2m: bool = False,
                 multimask_output: bool = True, progress: bool = False) -> None:
        if (points_per_side is None) == (point_grids is None):
            raise Sam2rtError("give exactly one of points_per_side (a grid size) or point_grids (explicit grids)")
        if output_mode not in OUTPUT_MODES:
            raise Sam2rtError(f"output_mode must be one of {', '.join(OUTPUT_MODES)}, got {output_mode!r}")
        for name, value in (("points_per_batch", points_per_batch), ("crop_n_points_downscale_factor",
                                                                     crop_n_points_downscale_factor)):
            if int(value) < 1:
                raise Sam2rtError(f"{name} must be a positive integer, got {value}")
        if int(crop_n_layers) < 0 or int(min_mask_region_area) < 0:
            raise Sam2rtError("crop_n_layers and min_mask_region_area must be >= 0")
        if points_per_side is not None:
            if int(points_per_side) < 1:
                raise Sam2rtError(f"points_per_side must be a positive integer, got {points_per_side}")
            grids = U.layer_point_grids(int(points_per_side), int(crop_n_layers), int(crop_n_points_downscale_factor))
        else:
            grids = [np.asarray(g, np.float64).reshape(-1, 2) for g in point_grids]
            if len(grids) != crop_n_layers + 1:
                raise Sam2rtError(f"point_grids needs one grid per crop layer ({crop_n_layers + 1}), got {len(grids)}")
        if output_mode == "coco_rle":
            U.coco_rle(np.zeros((1, 1), bool))  # fails now, with what to install, if pycocotools is missing
        self.point_grids = grids
        self.predictor = ImagePredictor(model_dir, backend=backend, threads=threads, engine_dir=engine_dir)
        self.points_per_batch = int(points_per_batch)
        self.pred_iou_thresh = float(pred_iou_thresh)
        self.stability_score_thresh = float(stability_score_thresh)
        self.stability_score_offset = float(stability_score_offset)
        self.mask_threshold = float(mask_threshold)
        self.box_nms_thresh = float(box_nms_thresh)
        self.crop_n_layers = int(crop_n_layers)
        self.crop_nms_thresh = float(crop_nms_thresh)
        self.crop_overlap_ratio = float(crop_overlap_ratio)
        self.crop_n_points_downscale_factor = int(crop_n_points_downscale_factor)
        self.min_mask_region_area = int(min_mask_region_area)
        self.output_mode = output_mode
        self.use_m2m = bool(use_m2m)
        self.multimask_output = bool(multimask_output)
        self.progress = progress

    # ---- public -----------------------------------------------------------------------------------------
    def generate(self, image: Any) -> list[dict[str, Any]]:
        """Masks for the whole image: (H, W, 3) uint8 RGB array (or PIL image) -> one record per mask.

        Each record: ``segmentation`` ((H, W) bool, or an RLE dict per ``output_mode``), ``area`` (int pixels),
        ``bbox`` ([x, y, w, h]), ``predicted_iou``, ``point_coords`` ([[x, y]], the prompt),
        ``stability_score`` and ``crop_box`` ([x, y, w, h]), as the official generator.
        """
        rgb = check_image(image)
        found = self._generate_masks(rgb)
        h, w = rgb.shape[:2]
        records = []
        for i in range(len(found.iou)):
            x0, y0, x1, y1 = (int(v) for v in found.boxes[i])
            mask = np.zeros((h, w), bool)
            mask[y0:y1 + 1, x0:x1 + 1] = found.patches[i]
            cx, cy, cx1, cy1 = (float(v) for v in found.crop_boxes[i])
            records.append({"segmentation": self._encode(mask), "area": int(found.patches[i].sum()),
                            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                            "predicted_iou": float(found.iou[i]), "point_coords": [found.points[i].tolist()],
                            "stability_score": float(found.stability[i]),
                            "crop_box": [cx, cy, cx1 - cx, cy1 - cy]})
        return records

    def _encode(self, mask: np.ndarray) -> Any:
        if self.output_mode == "coco_rle":
            return U.coco_rle(mask)
        return U.mask_to_rle(mask) if self.output_mode == "uncompressed_rle" else mask

    # ---- crops ----------------------------------------------------------------------------------------------
    def _generate_masks(self, rgb: np.ndarray) -> _Found:
        orig_hw = rgb.shape[:2]
        boxes, layers = U.crop_boxes(orig_hw, self.crop_n_layers, self.crop_overlap_ratio)
        calls = sum(-(-len(self.point_grids[layer]) // self.points_per_batch) for layer in layers)
        from tqdm import tqdm

        found = _Found()
        with tqdm(total=calls, desc="segment everything", unit="batch", disable=not self.progress) as bar:
            for crop_box, layer in zip(boxes, layers):
                found.extend(self._process_crop(rgb, crop_box, layer, orig_hw, bar))
        if len(boxes) > 1:  # duplicates between crops: prefer masks from smaller crops
            cb = found.crop_boxes
            scores = np.float32(1) / ((cb[:, 2] - cb[:, 0]) * (cb[:, 3] - cb[:, 1])).astype(np.float32)
            found = found.select(U.nms(found.boxes, scores, self.crop_nms_thresh))
        return found

    def _process_crop(self, rgb: np.ndarray, crop_box: list[int], layer: int, orig_hw: tuple[int, int],
                      bar: Any) -> _Found:
        x0, y0, x1, y1 = crop_box
        crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
        self.predictor.set_image(crop)
        crop_hw = crop.shape[:2]
        points = self.point_grids[layer] * np.array(crop_hw)[None, ::-1]  # (P, 2) x, y in crop pixels
        found = _Found()
        for start in range(0, len(points), self.points_per_batch):
            found.extend(self._process_batch(points[start:start + self.points_per_batch], crop_hw, crop_box,
                                             orig_hw))
            bar.update(1)
        self.predictor.reset_predictor()
        found = found.select(U.nms(found.boxes, found.iou, self.box_nms_thresh))  # duplicates within the crop
        found.boxes = found.boxes + np.array([x0, y0, x0, y0])
        found.points = found.points + np.float32([x0, y0])
        found.crop_boxes = np.tile(np.array(crop_box, np.int64), (len(found.iou), 1))
        return found

    # ---- one batch of prompts --------------------------------------------------------------------------
    def _process_batch(self, points: np.ndarray, crop_hw: tuple[int, int], crop_box: list[int],
                       orig_hw: tuple[int, int]) -> _Found:
        points = points.astype(np.float32)  # (B, 2), as the official torch.float32 tensor
        coords = transform_coords(points[:, None, :], self.predictor.image_size, True, crop_hw)  # (B, 1, 2)
        low, iou = self._decode(coords, None, self.multimask_output)  # (B, C, 4h, 4h), (B, C)
        C = low.shape[1]
        low, iou = low.reshape(-1, *low.shape[2:]), iou.reshape(-1)  # (B*C, 4h, 4h), (B*C,)
        points, coords = np.repeat(points, C, axis=0), np.repeat(coords, C, axis=0)
        if self.use_m2m:  # one refinement step, each mask its own (clamped) prompt
            refined = [self._decode(coords[s:s + self.points_per_batch],
                                    np.clip(low[s:s + self.points_per_batch, None], -LOW_RES_CLAMP, LOW_RES_CLAMP),
                                    False) for s in range(0, len(low), self.points_per_batch)]
            low = np.concatenate([r[0][:, 0] for r in refined])
            iou = np.concatenate([r[1][:, 0] for r in refined])
        keep = iou > self.pred_iou_thresh if self.pred_iou_thresh > 0.0 else np.ones(len(iou), bool)
        low, iou, points = low[keep], iou[keep], points[keep]
        if self.min_mask_region_area > 0:
            low = U.remove_small_regions(low, self.min_mask_region_area)

        ch, cw = crop_hw
        kept, stabilities, boxes, patches = [], [], [], []
        step = max(1, _MASK_PIXELS // (ch * cw))
        for s in range(0, len(low), step):
            masks, stability = U.upscale_masks(low[s:s + step], crop_hw, self.mask_threshold,
                                               self.stability_score_offset)  # (k, ch, cw) bool, (k,)
            for j in range(len(masks)):
                if self.stability_score_thresh > 0.0 and not stability[j] >= self.stability_score_thresh:
                    continue  # (NaN, an empty mask, fails too)
                box = U.mask_box(masks[j])
                kept.append(s + j)
                stabilities.append(stability[j])
                boxes.append(box)
                patches.append(masks[j, box[1]:box[3] + 1, box[0]:box[2] + 1].copy())
        out = _Found(np.array(boxes, np.int64).reshape(-1, 4), iou[kept], points[kept],
                     np.array(stabilities, np.float32), np.zeros((len(kept), 4), np.int64), patches)
        if kept:
            out = out.select(~U.near_crop_edge(out.boxes, crop_box, [0, 0, orig_hw[1], orig_hw[0]]))
        return out

    def _decode(self, coords: np.ndarray, mask_input: np.ndarray | None,
                multimask: bool) -> tuple[np.ndarray, np.ndarray]:
        """One mask decoder call: coords (B, 1, 2) model pixels, label 1; mask_input (B, 1, 4h, 4h) or None.
        Returns low-res logits (B, C, 4h, 4h) and predicted IoUs (B, C), C = 3 if multimask else 1."""
        B, h4 = len(coords), 4 * (self.predictor.image_size // 16)
        feats = self.predictor._features
        embed = feats["image_embed"]  # (1, 256, h, h)
        out = self.predictor.runners["mask_decoder"].run({
            "image_embed": np.ascontiguousarray(np.broadcast_to(embed, (B, *embed.shape[1:]))),
            "feat_s0": feats["high_res_feats"][0], "feat_s1": feats["high_res_feats"][1],
            "point_coords": np.ascontiguousarray(coords, np.float32), "point_labels": np.ones((B, 1), np.int32),
            "mask_input": np.zeros((B, 1, h4, h4), np.float32) if mask_input is None
            else np.ascontiguousarray(mask_input, np.float32),
            "has_mask_input": np.full((B,), mask_input is not None), "multimask": np.full((B,), multimask),
        })
        candidates, ious = out["mask_candidates"], out["iou_candidates"]  # (B, 4, 4h, 4h), (B, 4)
        if multimask:
            return candidates[:, 1:], ious[:, 1:]
        index = out["selected_candidate"].astype(np.intp)  # the decoder's single-mask choice (stability fallback)
        return (np.take_along_axis(candidates, index[:, None, None, None], axis=1),
                np.take_along_axis(ious, index[:, None], axis=1))
