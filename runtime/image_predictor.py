"""``ImagePredictor``: the official ``SAM2ImagePredictor`` API on the exported image encoder and mask decoder.

Same methods, arguments and return shapes as the official class (``set_image``, ``predict``,
``set_image_batch``, ``predict_batch``, ``reset_predictor``, ``get_image_embedding``, the ``_is_image_set`` /
``_orig_hw`` / ``_features`` attributes). The official single-image path differs from the video path in three
ways, all reproduced: preprocessing (``SAM2Transforms``: torchvision's antialiased bilinear resize, see
``image_transforms``), ``no_mem_embed`` added straight to the image feature, and the mask decoder called
directly, so masks are never gated by the object score; ``multimask_output=False`` keeps the decoder's
stability fallback. Every argument is checked before anything runs, so a rejected call changes nothing.
Imports no torch.
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from sam2rt.errors import Sam2rtError
from sam2rt.integrity import check_graph_shapes, check_model, no_mem_embed
from sam2rt.manifest import load_manifest
from sam2rt.runtime.prompts import check_point_count
from sam2rt.runtime.backends import load_runners
from sam2rt.runtime.image_transforms import (LOW_RES_CLAMP, check_image, postprocess_masks, preprocess_image,
                                             transform_coords)

GRAPHS = ("image_encoder", "mask_decoder")
_LABELS = (-1, 0, 1)  # -1: padding, a point that is ignored (lets prompts of a batch have different counts)


class ImagePredictor:
    """Single-image segmentation from points, boxes and mask logits (official ``SAM2ImagePredictor``).

    Args:
        model_dir: an exported model directory (``sam2rt export``).
        backend: "ort" (ONNX Runtime CPU), "ort-gpu" or "trt" (engines from ``sam2rt build``).
        threads: ONNX Runtime intra-op threads per graph (0: its default).
        engine_dir: TensorRT engines (backend "trt"); default MODEL_DIR/engines.
        mask_threshold: logits above it are mask pixels (official default 0.0).
    """

    def __init__(self, model_dir: str | Path, backend: str = "ort", threads: int = 0,
                 engine_dir: str | Path | None = None, mask_threshold: float = 0.0) -> None:
        if not isinstance(mask_threshold, numbers.Real) or not np.isfinite(mask_threshold):
            raise Sam2rtError(f"mask_threshold must be a finite number (a logit; official default 0.0), got "
                              f"{mask_threshold!r}")
        self.manifest = load_manifest(model_dir)
        check_model(self.manifest)  # the checks VideoPredictor makes: schema, graph hashes, then sizes
        self._no_mem_embed = no_mem_embed(self.manifest).reshape(1, -1, 1, 1)  # (1, 256, 1, 1)
        self.runners = load_runners(model_dir, backend=backend, threads=threads, engine_dir=engine_dir,
                                    graphs=GRAPHS)
        check_graph_shapes(self.runners, self.manifest)
        self.image_size = self.manifest.image_size
        self.mask_threshold = float(mask_threshold)
        self.chunk = self.manifest.bank.max_objects  # prompts per decoder call: bounds its memory
        self.reset_predictor()

    # ---- image -------------------------------------------------------------------------------------
    def reset_predictor(self) -> None:
        """Forget the image (or batch of images) and its features."""
        self._is_image_set = False
        self._features: dict[str, Any] | None = None
        self._orig_hw: list[tuple[int, int]] | None = None
        self._is_batch = False

    def set_image(self, image: Any) -> None:
        """Compute the features of one image: (H, W, 3) uint8 RGB numpy array or PIL image."""
        rgb = check_image(image)
        feats = self._encode([rgb])
        self.reset_predictor()
        self._features, self._orig_hw, self._is_image_set = feats, [tuple(rgb.shape[:2])], True

    def set_image_batch(self, image_list: Sequence[np.ndarray]) -> None:
        """Compute the features of several images ((H, W, 3) uint8 RGB arrays); use ``predict_batch`` next."""
        if not isinstance(image_list, (list, tuple)) or not image_list:
            raise Sam2rtError("set_image_batch takes a non-empty list of (H, W, 3) uint8 RGB numpy arrays")
        rgbs = [check_image(image) for image in image_list]
        feats = self._encode(rgbs)
        self.reset_predictor()
        self._features, self._orig_hw = feats, [tuple(r.shape[:2]) for r in rgbs]
        self._is_image_set, self._is_batch = True, True

    def _encode(self, rgbs: list[np.ndarray]) -> dict[str, Any]:
        """Image encoder per image -> {"image_embed": (I,256,h,h), "high_res_feats": [(I,32,4h,4h), (I,64,2h,2h)]}
        (read-only arrays); image_embed includes ``no_mem_embed`` as in the official predictor."""
        outs = [self.runners["image_encoder"].run({"image": preprocess_image(rgb, self.image_size)}) for rgb in rgbs]
        embed = np.concatenate([o["vision_feat"] for o in outs]) + self._no_mem_embed
        feats = {"image_embed": embed, "high_res_feats": [np.concatenate([o[k] for o in outs])
                                                          for k in ("feat_s0", "feat_s1")]}
        for a in (feats["image_embed"], *feats["high_res_feats"]):
            a.flags.writeable = False  # get_image_embedding hands it out; the predictor's state stays intact
        return feats

    def get_image_embedding(self) -> np.ndarray:
        """The image embedding (1, 256, h, h) float32 (one row per image after ``set_image_batch``), read-only."""
        if not self._is_image_set:
            raise Sam2rtError("An image must be set with .set_image(...) to generate an embedding.")
        return self._features["image_embed"]

    # ---- prediction --------------------------------------------------------------------------------
    def predict(self, point_coords: Any = None, point_labels: Any = None, box: Any = None, mask_input: Any = None,
                multimask_output: bool = True, return_logits: bool = False,
                normalize_coords: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for prompts on the image of ``set_image``.

        Args:
            point_coords: (N, 2) x, y in image pixels (or (B, N, 2) for B prompts at once).
            point_labels: (N,) (or (B, N)): 1 foreground, 0 background, -1 padding (ignored).
            box: (4,) x0, y0, x1, y1 in image pixels (or (B, 4)).
            mask_input: (1, 4h, 4h) logits from a previous call's low_res_masks (or (B, 1, 4h, 4h)).
            multimask_output: three masks per prompt; otherwise one (with the decoder's stability fallback).
            return_logits: return mask logits instead of 0/1 masks.
            normalize_coords: coordinates are image pixels; False: they are already in [0, 1].
        Returns:
            masks (C, H, W) float32 (0/1, or logits), iou_predictions (C,) float32, low_res_masks
            (C, 4h, 4h) float32 logits clamped to [-32, 32]; with B > 1 prompts each gets a leading B axis.
            C is 3 with ``multimask_output``, else 1.
        """
        self._require_image(batch=False)
        return self._predict(0, point_coords, point_labels, box, mask_input, multimask_output, return_logits,
                             normalize_coords)

    def predict_batch(self, point_coords_batch: Sequence[Any] | None = None,
                      point_labels_batch: Sequence[Any] | None = None, box_batch: Sequence[Any] | None = None,
                      mask_input_batch: Sequence[Any] | None = None, multimask_output: bool = True,
                      return_logits: bool = False,
                      normalize_coords: bool = True) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """``predict`` for every image of ``set_image_batch``; each argument is a list with one entry per image.

        Returns three lists (masks, iou_predictions, low_res_masks), one entry per image, shaped as ``predict``.
        """
        self._require_image(batch=True)
        n = len(self._orig_hw)
        lists = {"point_coords_batch": point_coords_batch, "point_labels_batch": point_labels_batch,
                 "box_batch": box_batch, "mask_input_batch": mask_input_batch}
        for name, value in lists.items():
            if value is not None and (not isinstance(value, (list, tuple)) or len(value) != n):
                raise Sam2rtError(f"{name} must be a list with one entry per image ({n}), got {_describe(value)}")
        per_image = [[None if v is None else v[i] for v in lists.values()] for i in range(n)]
        for i, args in enumerate(per_image):  # check every image's prompts before running any
            self._prompts(i, *args, normalize_coords)
        results = [self._predict(i, *args, multimask_output, return_logits, normalize_coords)
                   for i, args in enumerate(per_image)]
        return [r[0] for r in results], [r[1] for r in results], [r[2] for r in results]

    def _require_image(self, batch: bool) -> None:
        if not self._is_image_set:
            setter = "set_image_batch" if batch else "set_image"
            raise Sam2rtError(f"An image must be set with .{setter}(...) before mask prediction.")
        if batch != self._is_batch:
            raise Sam2rtError("predict_batch works on images from set_image_batch(...); use predict after "
                              "set_image(...)" if batch else
                              "a batch of images is set: use predict_batch(...), or set_image(...) for one image")

    def _predict(self, img_idx: int, point_coords: Any, point_labels: Any, box: Any, mask_input: Any,
                 multimask_output: bool, return_logits: bool,
                 normalize_coords: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        for name, flag in (("multimask_output", multimask_output), ("return_logits", return_logits),
                           ("normalize_coords", normalize_coords)):
            if not (isinstance(flag, (bool, np.bool_)) or (isinstance(flag, (int, np.integer)) and flag in (0, 1))):
                raise Sam2rtError(f"{name} must be True or False, got {_describe(flag)}")
        coords, labels, mask = self._prompts(img_idx, point_coords, point_labels, box, mask_input, normalize_coords)
        B, C = coords.shape[0], 3 if multimask_output else 1
        H, W = self._orig_hw[img_idx]
        _check_fits(B * C * H * W * 4, f"{B} prompt(s) x {C} mask(s) of {W}x{H} float32 (the official output)")
        masks = np.empty((B, C, H, W), np.float32)
        iou = np.empty((B, C), np.float32)
        h4 = 4 * (self.image_size // 16)
        low_res = np.empty((B, C, h4, h4), np.float32)
        chunks = range(0, B, self.chunk)  # the decoder's memory grows with B: at most `chunk` prompts per call
        for b in tqdm(chunks, desc="decode prompts", unit="chunk", disable=len(chunks) < 8):
            s = slice(b, b + self.chunk)
            m = None if mask is None else mask[s] if len(mask) == B else mask
            low_res[s], iou[s] = self._decode(img_idx, coords[s], labels[s], m, multimask_output)
            up = postprocess_masks(low_res[s], (H, W))  # (b, C, H, W) logits
            masks[s] = up if return_logits else up > self.mask_threshold  # 0/1 as float32
        np.clip(low_res, -LOW_RES_CLAMP, LOW_RES_CLAMP, out=low_res)
        if B == 1:  # the official squeeze(0)
            return masks[0], iou[0], low_res[0]
        return masks, iou, low_res

    def _decode(self, img_idx: int, coords: np.ndarray, labels: np.ndarray, mask: np.ndarray | None,
                multimask_output: bool) -> tuple[np.ndarray, np.ndarray]:
        """The mask decoder on B prompts: coords (B, N, 2), labels (B, N) -> low-res logits (B, C, 4h, 4h) and
        predicted IoU (B, C), C = 3 with ``multimask_output`` else 1 (the decoder's own choice)."""
        B, h4 = coords.shape[0], 4 * (self.image_size // 16)
        feats = self._features
        embed = feats["image_embed"][img_idx:img_idx + 1]  # (1, 256, h, h)
        s0, s1 = (f[img_idx:img_idx + 1] for f in feats["high_res_feats"])
        out = self.runners["mask_decoder"].run({
            "image_embed": np.ascontiguousarray(np.broadcast_to(embed, (B, *embed.shape[1:]))),
            "feat_s0": s0, "feat_s1": s1, "point_coords": coords, "point_labels": labels,
            "mask_input": np.ascontiguousarray(np.broadcast_to(mask, (B, 1, h4, h4)), np.float32)
            if mask is not None else np.zeros((B, 1, h4, h4), np.float32),
            "has_mask_input": np.full((B,), mask is not None), "multimask": np.full((B,), bool(multimask_output)),
        })
        candidates, ious = out["mask_candidates"], out["iou_candidates"]  # (B, 4, 4h, 4h), (B, 4)
        if multimask_output:
            low_res, iou = candidates[:, 1:], ious[:, 1:]
        else:  # the official decoder's single-mask choice (stability fallback), before any gating
            index = out["selected_candidate"].astype(np.intp)  # (B,)
            low_res = np.take_along_axis(candidates, index[:, None, None, None], axis=1)
            iou = np.take_along_axis(ious, index[:, None], axis=1)
        return low_res, iou

    def _prompts(self, img_idx: int, point_coords: Any, point_labels: Any, box: Any, mask_input: Any,
                 normalize_coords: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Check and transform prompts -> coords (B, N, 2) float32 in model pixels, labels (B, N) int32 (box
        corners labelled 2, 3 first, as the official predictor), mask (B or 1, 1, 4h, 4h) float32 or None."""
        if (point_coords is None) != (point_labels is None):
            raise Sam2rtError("point_coords and point_labels must be given together (one label per point)")
        if point_coords is None and box is None:
            raise Sam2rtError("give point_coords with point_labels and/or a box; the exported decoder needs at "
                              "least one point or box (a mask_input alone is not supported)")
        h, w = self._orig_hw[img_idx]
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        if box is not None:
            b = _numbers(box, "box")
            if b.size == 0 or b.size % 4 or b.ndim > 2 or b.shape[-1] != 4:
                raise Sam2rtError(f"box must be (4,) x0, y0, x1, y1 or (B, 4), got shape {b.shape}")
            corners = b.reshape(-1, 2, 2)  # (B, 2, 2)
            flat = b.reshape(-1, 4)
            if not ((flat[:, 0] < flat[:, 2]) & (flat[:, 1] < flat[:, 3])).all():
                raise Sam2rtError(f"box {_describe(box)} must have x0 < x1 and y0 < y1 (top-left corner first, then "
                                  "bottom-right), as VideoPredictor and the CLI require")
            parts.append((corners, np.tile(np.array([[2, 3]]), (len(corners), 1))))
        if point_coords is not None:
            pts, lbl = _numbers(point_coords, "point_coords"), _labels(point_labels)
            if pts.ndim not in (2, 3) or pts.shape[-1] != 2 or pts.shape[-2] == 0:
                raise Sam2rtError(f"point_coords must be (N, 2) or (B, N, 2) with N >= 1, got shape {pts.shape}")
            if lbl.shape != pts.shape[:-1] or not np.isin(lbl, _LABELS).all():
                raise Sam2rtError(f"point_labels must be shaped {pts.shape[:-1]} (one per point) with values 1 "
                                  f"(foreground), 0 (background) or -1 (padding); got {lbl.tolist()}")
            parts.append((pts.reshape(-1, *pts.shape[-2:]), lbl.reshape(-1, pts.shape[-2])))
            for row in parts[-1][1]:
                check_point_count(row, self.manifest.bank.max_points)
        if len({len(p) for p, _ in parts}) > 1:
            raise Sam2rtError(f"{len(parts[0][0])} boxes but {len(parts[1][0])} point prompts: pass one box per "
                              "point prompt (B boxes with (B, N, 2) points)")
        coords = np.concatenate([p for p, _ in parts], axis=1)  # (B, N, 2)
        labels = np.concatenate([lb for _, lb in parts], axis=1).astype(np.int32)
        limit = np.array([w, h]) if normalize_coords else np.array([1.0, 1.0])
        if (coords < 0).any() or (coords > limit).any():
            where = (f"the {w}x{h} image (x in 0..{w}, y in 0..{h})" if normalize_coords
                     else "[0, 1] (normalize_coords=False takes coordinates relative to the image size)")
            raise Sam2rtError(f"points/box fall outside {where}; clip them to it")
        coords = transform_coords(coords, self.image_size, normalize_coords, (h, w))
        return coords, labels, self._mask(mask_input, len(coords))

    def _mask(self, mask_input: Any, batch: int) -> np.ndarray | None:
        if mask_input is None:
            return None
        h4 = 4 * (self.image_size // 16)
        m = _numbers(mask_input, "mask_input")
        m = m[None] if m.ndim == 3 else m
        if m.ndim != 4 or m.shape[1:] != (1, h4, h4) or m.shape[0] not in (1, batch):
            raise Sam2rtError(f"mask_input must be (1, {h4}, {h4}) low-res logits (a previous low_res_masks[i][None]) "
                              f"or ({batch}, 1, {h4}, {h4}), got shape {np.shape(mask_input)}")
        return m.astype(np.float32)


def available_memory() -> int | None:
    """Bytes the kernel says can be allocated without swapping (MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_fits(nbytes: int, what: str) -> None:
    """Refuse an output that cannot fit in memory (the decoder works in chunks; the returned masks cannot)."""
    free = available_memory()
    if free is not None and nbytes > free:
        raise Sam2rtError(f"the result would need {nbytes / 2**30:.1f} GiB ({what}) but {free / 2**30:.1f} GiB is "
                          "available; pass fewer boxes or prompts per call, or multimask_output=False")


def _numbers(value: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise Sam2rtError(f"{what} must be an array of numbers, got {_describe(value)}") from None
    if not np.isfinite(arr).all():
        raise Sam2rtError(f"{what} contains NaN or infinity; pass finite values")
    return arr


def _labels(value: Any) -> np.ndarray:
    try:
        return np.asarray(value)
    except (TypeError, ValueError):  # ragged lists
        raise Sam2rtError(f"point_labels must be an array of 1, 0 or -1, one per point, got {_describe(value)}") from None


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) <= 60:
        return text
    try:
        return f"{type(value).__name__} of shape {np.shape(value)}"
    except ValueError:  # ragged nesting has no shape
        return f"{type(value).__name__} of {len(value)} ragged entries" if hasattr(value, "__len__") else text[:60]
