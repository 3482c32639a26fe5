"""Export wrapper: memory encoder, from low-res mask logits to one bank slot."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MemoryEncoderGraph(nn.Module):
    """Encode B objects' masks on the current frame into ``memory (B, hw, 64)`` (see contract MEMORY_ENCODER).

    Upsampling to S x S, binarisation on prompted frames, the sigmoid scale/bias and the no-object spatial
    embedding all happen inside. The output stays float32: the bank rounds it to bfloat16 when it stores it
    (as the official predictor does), so this graph can be verified against PyTorch to fp32 tolerance.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        assert not model.non_overlap_masks_for_mem_enc, "non-overlapping memory masks are not exported"
        self.model = model

    def forward(
        self,
        vision_feat: torch.Tensor,  # (1, 256, h, h)
        mask_logits: torch.Tensor,  # (B, 1, 4h, 4h)
        binarize: torch.Tensor,  # (B,) bool
        object_score_logits: torch.Tensor,  # (B, 1)
    ) -> torch.Tensor:
        m = self.model
        B = mask_logits.shape[0]
        size = m.image_size
        high_res = F.interpolate(mask_logits, size=(size, size), mode="bilinear", align_corners=False)
        mask = torch.sigmoid(high_res)
        if m.binarize_mask_from_pts_for_mem_enc:
            mask = torch.where(binarize[:, None, None, None], (high_res > 0).float(), mask)
        if m.sigmoid_scale_for_mem_enc != 1.0:
            mask = mask * m.sigmoid_scale_for_mem_enc
        if m.sigmoid_bias_for_mem_enc != 0.0:
            mask = mask + m.sigmoid_bias_for_mem_enc
        pix = vision_feat.expand(B, -1, -1, -1)
        feats = m.memory_encoder(pix, mask, skip_mask_sigmoid=True)["vision_features"]  # (B, 64, h, h)
        if m.no_obj_embed_spatial is not None:
            absent = (object_score_logits <= 0).float()  # (B, 1)
            feats = feats + absent[..., None, None] * m.no_obj_embed_spatial[..., None, None]
        return feats.flatten(2).transpose(1, 2)  # (B, hw, 64)
