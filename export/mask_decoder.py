"""Export wrapper: prompt encoder + mask decoder + mask selection + object-score gating + pointer head.

Besides the video predictor's selected, gated mask it returns every candidate mask and IoU, ungated, and
the index of the selected one: the image predictor's outputs (contract MASK_DECODER).
"""

from __future__ import annotations

import torch
from torch import nn

from sam2rt.contract import NO_OBJ_SCORE


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
        sparse = pe._embed_points(point_coords, point_labels, pad=True)  # (B, N+1, 256)
        no_mask = pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
        dense = torch.where(has_mask_input[:, None, None, None], pe._embed_masks(mask_input), no_mask)
        high_res = [feat_s0.expand(B, -1, -1, -1), feat_s1.expand(B, -1, -1, -1)]
        masks, ious, tokens, score = dec.predict_masks(
            image_embeddings=image_embed,
            image_pe=self.image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            repeat_image=False,
            high_res_features=high_res,
        )  # (B, 4, 4h, 4h), (B, 4), (B, 4, 256), (B, 1)

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
        if m.pred_obj_scores:
            present = score > 0
            low_res = torch.where(present[:, :, None, None], low_res, NO_OBJ_SCORE)
            lam = score.sigmoid() if m.soft_no_obj_ptr else present.float()
            if m.fixed_no_obj_ptr:
                obj_ptr = lam * obj_ptr
            obj_ptr = obj_ptr + (1 - lam) * m.no_obj_ptr
        return low_res, iou, obj_ptr, score, masks, ious, self._selected(masks, best, multimask)

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
