"""One tracking step on the four graphs, for B objects at once: the official ``track_step`` without torch.

The predictor and the stream tracker decide *what* to run (which frame, which objects, which memories);
this module runs it: image features, memory attention -> decoder, the mask-prompt path, the memory encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sam2rt.integrity import check_graph_shapes, check_model, load_constants
from sam2rt.manifest import Manifest, load_manifest
from sam2rt.runtime.backends import GraphRunner, load_runners
from sam2rt.runtime.bank import BankInputs, FrameOutput, bf16_bits
from sam2rt.runtime.imageops import bf16_round_, fill_holes, preprocessor, resize_bilinear


@dataclass(frozen=True)
class Features:
    """Image-encoder outputs of one frame: (1,256,h,h), (1,32,4h,4h), (1,64,2h,2h)."""

    vision_feat: np.ndarray
    feat_s0: np.ndarray
    feat_s1: np.ndarray


@dataclass(frozen=True)
class HeadOutput:
    """Decoder results for B objects: masks (B,1,4h,4h), obj_ptr (B,256), scores (B,1).

    candidates: the decoder's ungated candidates for a memory policy that chooses itself (mask_candidates
    (B,4,4h,4h), iou_candidates (B,4), obj_ptr_candidates (B,4,256), selected_candidate (B,)), or None.
    iou (B,) / kf_score (B,) float32 (NaN: none): a choosing policy's scores of the kept candidates.
    """

    low_res_masks: np.ndarray
    obj_ptr: np.ndarray
    object_score_logits: np.ndarray
    candidates: dict[str, np.ndarray] | None = None
    iou: np.ndarray | None = None
    kf_score: np.ndarray | None = None


class Engine:
    """The graphs of one model directory and the arithmetic between them."""

    def __init__(self, model_dir: str | Path, backend: str = "ort", threads: int = 0,
                 preprocess: str = "official", engine_dir: str | Path | None = None) -> None:
        self._preprocess = preprocessor(preprocess)
        self.manifest: Manifest = load_manifest(model_dir)
        check_model(self.manifest)  # schema, graph hashes: before the (slow) graph loading
        self.runners: dict[str, GraphRunner] = load_runners(model_dir, backend=backend, threads=threads,
                                                            engine_dir=engine_dir)
        check_graph_shapes(self.runners, self.manifest)
        self.size = self.manifest.image_size
        self.h = self.size // 16
        self.tracking = self.manifest.tracking
        consts = load_constants(self.manifest)
        self.no_obj_ptr = consts["no_obj_ptr"]  # (256,)
        self.mask_ds_w = consts["mask_downsample_weight"].reshape(4, 4)
        self.mask_ds_b = float(consts["mask_downsample_bias"].reshape(-1)[0])
        self._banks: dict[int, BankInputs] = {}

    def features(self, rgb: np.ndarray) -> Features:
        """Run the image encoder on an (H,W,3) uint8 RGB frame."""
        image = self._preprocess(rgb, self.size)
        out = self.runners["image_encoder"].run({"image": image})
        return Features(out["vision_feat"], out["feat_s0"], out["feat_s1"])

    def bank(self, batch: int) -> BankInputs:
        """Preallocated memory-attention inputs for ``batch`` objects (reused across frames)."""
        if batch not in self._banks:
            self._banks[batch] = BankInputs(self.manifest.bank, batch, self.manifest.memory_tokens)
        return self._banks[batch]

    def use_multimask(self, is_init_cond_frame: bool, num_points: int) -> bool:
        """The official ``_use_multimask``; ``num_points`` counts box corners, 0 without prompts."""
        t = self.tracking
        return bool(t["multimask_output_in_sam"] and (is_init_cond_frame or t["multimask_output_for_tracking"])
                    and t["multimask_min_pt_num"] <= num_points <= t["multimask_max_pt_num"])

    def track(self, feats: Features, bank: BankInputs, points: np.ndarray | None, labels: np.ndarray | None,
              mask_logits: np.ndarray | None, multimask: bool) -> HeadOutput:
        """Memory attention then decoder for the B objects of ``bank``.

        points (B,N,2) float32 in model-input pixels, labels (B,N) int32, or None (tracking: one padding
        point); mask_logits (B,1,4h,4h) previous logits for refinement clicks, or None.
        """
        B = bank.memory.shape[1]
        cond = self.runners["memory_attention"].run({"vision_feat": feats.vision_feat, **bank.feeds()})
        return self._decode(cond["conditioned_feat"], feats, B, points, labels, mask_logits, multimask)

    def _decode(self, embed, feats, B, points, labels, mask_logits, multimask) -> HeadOutput:
        h4 = 4 * self.h
        if points is None:
            points, labels = np.zeros((B, 1, 2), np.float32), np.full((B, 1), -1, np.int32)
        has_mask = mask_logits is not None
        if mask_logits is None:
            mask_logits = np.zeros((B, 1, h4, h4), np.float32)
        out = self.runners["mask_decoder"].run({
            "image_embed": embed, "feat_s0": feats.feat_s0, "feat_s1": feats.feat_s1,
            "point_coords": np.ascontiguousarray(points, np.float32),
            "point_labels": np.ascontiguousarray(labels, np.int32),
            "mask_input": np.ascontiguousarray(mask_logits, np.float32),
            "has_mask_input": np.full((B,), has_mask), "multimask": np.full((B,), multimask),
        })
        cands = {k: out[k] for k in ("mask_candidates", "iou_candidates", "obj_ptr_candidates", "selected_candidate")}
        return HeadOutput(out["low_res_masks"], out["obj_ptr"], out["object_score_logits"], cands, out["iou"][:, 0])

    def mask_as_output(self, feats: Features, mask: np.ndarray, min_obj_score: float | None = None) -> HeadOutput:
        """The official ``_use_mask_as_output`` for one object's binary (1,1,S,S) float32 mask prompt.

        min_obj_score: presence threshold of the decoder's own pointer gating where a memory policy sets one
        (SAMURAI: -1; None: the graph's, 0)."""
        high_res = mask * 20.0 - 10.0
        low_res = resize_bilinear(high_res, (4 * self.h, 4 * self.h), antialias=True).astype(np.float32)
        h4 = 4 * self.h
        # mask_downsample: a 4x4 stride-4 conv with one channel
        blocks = mask.reshape(h4, 4, h4, 4)
        ds = (np.einsum("iajb,ab->ij", blocks, self.mask_ds_w) + self.mask_ds_b).astype(np.float32)
        head = self._decode(feats.vision_feat, feats, 1, None, None, ds[None, None], multimask=False)
        lam = np.float32(1.0 if (mask > 0).any() else 0.0)
        ptr = head.obj_ptr
        if min_obj_score is not None:  # the pointer gated by the decoder's score at the policy's threshold
            inner = np.float32(1.0 if head.object_score_logits[0, 0] > np.float32(min_obj_score) else 0.0)
            raw = head.candidates["obj_ptr_candidates"][:, 0]  # single-mask token, as multimask is off
            ptr = (inner * raw if self.tracking["fixed_no_obj_ptr"] else raw) + (1 - inner) * self.no_obj_ptr
        if self.tracking["pred_obj_scores"]:
            if self.tracking["fixed_no_obj_ptr"]:
                ptr = lam * ptr
            ptr = ptr + (1 - lam) * self.no_obj_ptr
        score = np.full((1, 1), 20.0 * lam - 10.0, np.float32)
        return HeadOutput(low_res, ptr.astype(np.float32), score, iou=np.ones(1, np.float32))

    def encode_memory(self, feats: Features, mask_logits: np.ndarray, binarize: bool,
                      scores: np.ndarray) -> np.ndarray:
        """Memory encoder for B objects -> (B, hw, 64) float32, bfloat16-rounded like the official bank."""
        B = mask_logits.shape[0]
        out = self.runners["memory_encoder"].run({
            "vision_feat": feats.vision_feat, "mask_logits": np.ascontiguousarray(mask_logits, np.float32),
            "binarize": np.full((B,), binarize), "object_score_logits": np.ascontiguousarray(scores, np.float32),
        })["memory"]
        return bf16_round_(out)

    def frame_outputs(self, head: HeadOutput, memory: np.ndarray | None, fill_hole_area: int) -> list[FrameOutput]:
        """Split a batched result into per-object outputs; stored masks get holes filled (official)."""
        masks = fill_holes(head.low_res_masks, fill_hole_area) if fill_hole_area > 0 else head.low_res_masks
        return [
            FrameOutput(pred_masks=masks[b:b + 1].copy(), obj_ptr=head.obj_ptr[b].copy(),
                        object_score_logits=head.object_score_logits[b:b + 1].copy(),
                        memory=None if memory is None else bf16_bits(memory[b]),
                        iou=None if head.iou is None else float(head.iou[b]),
                        kf_score=None if head.kf_score is None or np.isnan(head.kf_score[b]) else float(head.kf_score[b]))
            for b in range(masks.shape[0])
        ]

    def to_video_res(self, low_res: np.ndarray, height: int, width: int) -> np.ndarray:
        """(K,1,4h,4h) logits -> (K,1,H,W), bilinear without antialias (official output resize)."""
        if low_res.shape[0] == 0:
            return np.zeros((0, 1, height, width), np.float32)
        return resize_bilinear(low_res, (height, width), antialias=False).astype(np.float32, copy=False)
