"""Export wrapper: prompt encoder + mask decoder + mask selection + object-score gating + pointer head.

Besides the video predictor's selected, gated mask it returns every candidate mask and IoU, ungated, and
the index of the selected one: the image predictor's outputs (contract MASK_DECODER).
"""

from __future__ import annotations

import torch
from torch import nn

from sam2rt.contract import NO_OBJ_SCORE


def _predict_masks(dec: nn.Module, image_embed: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                   dense: torch.Tensor, high_res: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The official ``MaskDecoder.predict_masks`` (``repeat_image=False``), with ``expand`` for the positional
    encoding: the official ``repeat_interleave(image_pe, B, 0)`` traces to OneHot -> Reshape -> Tile on the
    dynamic B, which TensorRT rejects ("IOneHotLayer cannot be used to compute a shape tensor").

    Returns masks (B, 4, 4h, 4h), iou (B, 4), mask tokens (B, 4, 256), object score logits (B, 1).
    """
    s = 1 if dec.pred_obj_scores else 0
    heads = [dec.obj_score_token.weight] if dec.pred_obj_scores else []
    output_tokens = torch.cat([*heads, dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
    tokens = torch.cat((output_tokens.unsqueeze(0).expand(sparse.shape[0], -1, -1), sparse), dim=1)
    src = image_embed + dense  # (B, 256, h, h)
    pos_src = image_pe.expand(tokens.shape[0], -1, -1, -1)  # (B, 256, h, h): one encoding for every object
    b, c, h, w = src.shape
    hs, src = dec.transformer(src, pos_src, tokens)
    iou_token_out = hs[:, s, :]
    mask_tokens_out = hs[:, s + 1:(s + 1 + dec.num_mask_tokens), :]  # (B, 4, 256)
    src = src.transpose(1, 2).reshape(b, c, h, w)
    if dec.use_high_res_features:
        dc1, ln1, act1, dc2, act2 = dec.output_upscaling
        feat_s0, feat_s1 = high_res
        upscaled = act2(dc2(act1(ln1(dc1(src) + feat_s1))) + feat_s0)
    else:
        upscaled = dec.output_upscaling(src)
    hyper_in = torch.stack([mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)],
                           dim=1)  # (B, 4, 32)
    b, c, h, w = upscaled.shape
    masks = (hyper_in @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)
    iou_pred = dec.iou_prediction_head(iou_token_out)
    if dec.pred_obj_scores:
        score = dec.pred_obj_score_head(hs[:, 0, :])
    else:
        score = 10.0 * iou_pred.new_ones(iou_pred.shape[0], 1)  # official: "assume present", sigmoid(10) = 1
    return masks, iou_pred, mask_tokens_out, score


def _pick(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b]]`` for every batch row, keeping the picked dim: ``(B, K, ...)`` -> ``(B, 1, ...)``."""
    idx = index.reshape(-1, 1, *([1] * (x.dim() - 2))).expand(-1, 1, *x.shape[2:])
    return torch.gather(x, 1, idx)


class MaskDecoderGraph(nn.Module):
    """Prompted mask decoding for B objects at once (see contract MASK_DECODER).

    ``multimask`` is a per-object input instead of the official Python bool, so objects with one click
    (3 masks, best IoU) and objects with several clicks (single mask, stability fallback) can share a call.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("image_pe", model.sam_prompt_encoder.get_dense_pe())  # (1, 256, h, h)

    def forward(
        self,
        image_embed: torch.Tensor,  # (B, 256, h, h)
        feat_s0: torch.Tensor,  # (1, 32, 4h, 4h)
        feat_s1: torch.Tensor,  # (1, 64, 2h, 2h)
        point_coords: torch.Tensor,  # (B, N, 2)
        point_labels: torch.Tensor,  # (B, N) int32
        mask_input: torch.Tensor,  # (B, 1, 4h, 4h)
        has_mask_input: torch.Tensor,  # (B,) bool
        multimask: torch.Tensor,  # (B,) bool
    ) -> tuple[torch.Tensor, ...]:
        m = self.model
        pe, dec = m.sam_prompt_encoder, m.sam_mask_decoder
        B = image_embed.shape[0]
        sparse = self._embed_points(point_coords, point_labels)  # (B, N+1, 256)
        no_mask = pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
        dense = torch.where(has_mask_input[:, None, None, None], pe._embed_masks(mask_input), no_mask)
        high_res = [feat_s0.expand(B, -1, -1, -1), feat_s1.expand(B, -1, -1, -1)]
        masks, ious, tokens, score = _predict_masks(dec, image_embed, self.image_pe, sparse, dense, high_res)
        # (B, 4, 4h, 4h), (B, 4), (B, 4, 256), (B, 1)

        best = torch.argmax(ious[:, 1:], dim=-1)  # multimask: best of masks 1..3
        multi_mask, multi_iou = _pick(masks[:, 1:], best), _pick(ious[:, 1:], best)
        multi_token = _pick(tokens[:, 1:], best)[:, 0] if dec.use_multimask_token_for_obj_ptr else tokens[:, 0]
        if dec.dynamic_multimask_via_stability:
            single_mask, single_iou = dec._dynamic_multimask_via_stability(masks, ious)
        else:
            single_mask, single_iou = masks[:, 0:1], ious[:, 0:1]
        mm = multimask[:, None]
        low_res = torch.where(mm[:, :, None, None], multi_mask, single_mask)
        iou = torch.where(mm, multi_iou, single_iou)
        token = torch.where(mm, multi_token, tokens[:, 0])

        obj_ptr = m.obj_ptr_proj(token)  # (B, 256)
        ptr_candidates = m.obj_ptr_proj(tokens)  # (B, 4, 256), ungated: a memory policy picks and gates
        if m.pred_obj_scores:
            present = score > 0
            low_res = torch.where(present[:, :, None, None], low_res, NO_OBJ_SCORE)
            lam = score.sigmoid() if m.soft_no_obj_ptr else present.float()
            if m.fixed_no_obj_ptr:
                obj_ptr = lam * obj_ptr
            obj_ptr = obj_ptr + (1 - lam) * m.no_obj_ptr
        return low_res, iou, obj_ptr, score, masks, ious, self._selected(masks, best, multimask), ptr_candidates

    def _embed_points(self, point_coords: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
        """The official sparse prompt embedding with its padding point: (B, N+1, 256)."""
        return self.model.sam_prompt_encoder._embed_points(point_coords, point_labels, pad=True)

    def _selected(self, masks: torch.Tensor, best: torch.Tensor, multimask: torch.Tensor) -> torch.Tensor:
        """Index into the 4 candidates of the mask the selection above kept: (B,) int32.

        Multimask: the best of 1..3. Single mask: 0, or the best of 1..3 where the stability fallback of
        the official ``_dynamic_multimask_via_stability`` replaced an unstable single mask.
        """
        dec = self.model.sam_mask_decoder
        multi_index = (best + 1).to(torch.int32)  # (B,); int32 from here: TensorRT prefers it to int64
        single_index = torch.zeros_like(multi_index)
        if dec.dynamic_multimask_via_stability:
            stability = dec._get_stability_scores(masks[:, 0:1])[:, 0]  # (B,)
            single_index = torch.where(stability >= dec.dynamic_multimask_stability_thresh, single_index, multi_index)
        return torch.where(multimask, multi_index, single_index)
