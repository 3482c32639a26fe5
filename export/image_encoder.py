"""Export wrapper: image encoder (Hiera trunk + FPN neck + the decoder's conv_s0/conv_s1).

Hiera's windowed blocks pad the token grid to a multiple of the window (at 512 px the 32x32 stage-3 grid to
42x42 for 14x14 windows: 72 % more tokens; 20 % at 1024 px) and then run the qkv and output projections on every
padded token. The traced graph projects only the real tokens (:func:`unpadded_window_block`): the projection of a
zero padding token is the bias alone, so qkv is ``x·Wᵀ`` on the real tokens, padded with zeros, plus the bias;
the output projection is per token, so it runs after the padding is cropped away. Same values as the official
block (the padded tokens still enter attention as keys, exactly as there), 8 % fewer multiply-adds in the
Hiera-tiny trunk at 512 px.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from sam2.modeling.backbones.hieradet import MultiScaleBlock, do_pool
from sam2.modeling.backbones.utils import window_partition, window_unpartition


def _padding(size: int, window: int) -> int:
    return (window - size % window) % window


def unpadded_window_block(block: MultiScaleBlock, x: torch.Tensor) -> torch.Tensor:
    """``MultiScaleBlock.forward`` with the qkv / output projections over real tokens only. ``x (B, H, W, C)``."""
    window, (H, W) = block.window_size, x.shape[1:3]
    if window == 0 or (_padding(H, window) == 0 and _padding(W, window) == 0):
        return MultiScaleBlock.forward(block, x)  # nothing padded: the official forward
    attn = block.attn
    shortcut = x
    x = block.norm1(x)
    if block.dim != block.dim_out:
        shortcut = do_pool(block.proj(x), block.pool)
    qkv = F.pad(F.linear(x, attn.qkv.weight), (0, 0, 0, _padding(W, window), 0, _padding(H, window)))
    windows, _ = window_partition(qkv + attn.qkv.bias, window)  # (nW, ws, ws, 3C): padding tokens = the bias
    n, h, w, _ = windows.shape
    q, k, v = torch.unbind(windows.reshape(n, h * w, 3, attn.num_heads, -1), 2)  # (nW, ws*ws, heads, d)
    if attn.q_pool:
        q = do_pool(q.reshape(n, h, w, -1), attn.q_pool)
        h, w = q.shape[1:3]
        q = q.reshape(n, h * w, attn.num_heads, -1)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    out = out.transpose(1, 2).reshape(n, h, w, -1)  # (nW, ws', ws', C_out)
    if block.q_stride:  # the official block's window and grid after Q pooling
        window, (H, W) = block.window_size // block.q_stride[0], shortcut.shape[1:3]
    padded = (H + _padding(H, window), W + _padding(W, window))
    x = shortcut + block.drop_path(attn.proj(window_unpartition(out, window, padded, (H, W))))
    return x + block.drop_path(block.mlp(block.norm2(x)))


@contextlib.contextmanager
def unpadded_windows(trunk: nn.Module) -> Iterator[None]:
    """Within the block, the trunk's Hiera blocks run :func:`unpadded_window_block` (for tracing); the official
    forward is restored after, so verification still compares against the official modules."""
    blocks = [b for b in trunk.modules() if isinstance(b, MultiScaleBlock)]
    for block in blocks:
        block.forward = types.MethodType(unpadded_window_block, block)
    try:
        yield
    finally:
        for block in blocks:
            del block.forward


class ImageEncoderGraph(nn.Module):
    """``image (1,3,S,S)`` -> ``vision_feat (1,256,h,h), feat_s0 (1,32,4h,4h), feat_s1 (1,64,2h,2h)``.

    conv_s0/conv_s1 are per-frame constants, so they run here once rather than in every decoder call.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with unpadded_windows(self.model.image_encoder.trunk):
            fpn = self.model.forward_image(image)["backbone_fpn"]
        return fpn[-1], fpn[0], fpn[1]
