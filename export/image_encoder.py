"""Export wrapper: image encoder (Hiera trunk + FPN neck + the decoder's conv_s0/conv_s1)."""

from __future__ import annotations

import torch
from torch import nn


class ImageEncoderGraph(nn.Module):
    """``image (1,3,S,S)`` -> ``vision_feat (1,256,h,h), feat_s0 (1,32,4h,4h), feat_s1 (1,64,2h,2h)``.

    conv_s0/conv_s1 are per-frame constants, so they run here once rather than in every decoder call.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fpn = self.model.forward_image(image)["backbone_fpn"]
        return fpn[-1], fpn[0], fpn[1]
