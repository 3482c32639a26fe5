"""The image encoder's Hiera blocks project only real tokens (export/image_encoder.py): the same values as the
official blocks, which pad first, and the official forward is back after tracing."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("size", [256, 512])
def test_unpadded_window_blocks_match_the_official_blocks(size: int) -> None:
    torch = pytest.importorskip("torch")
    from sam2.modeling.backbones.hieradet import MultiScaleBlock

    from sam2rt.export.checkpoints import build_model
    from sam2rt.export.image_encoder import ImageEncoderGraph, unpadded_window_block

    model, _ = build_model("sam2.1_hiera_tiny", size, random_seed=0)
    trunk = model.image_encoder.trunk
    image = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)).clamp(-2.2, 2.7)
    with torch.no_grad():
        x = trunk.patch_embed(image)
        x = x + trunk._get_pos_embed(x.shape[1:3])
        padded = 0
        for block in trunk.blocks:  # each block on the official block's input: equal block by block
            H, W = x.shape[1:3]
            padded += block.window_size > 0 and (H % block.window_size or W % block.window_size) > 0
            ref = block(x)
            torch.testing.assert_close(unpadded_window_block(block, x), ref, rtol=0, atol=1e-5)
            x = ref
        assert padded >= 3  # the rewrite ran where the official block pads (stage 3 windows, 14 on 16 or 32)

        official = model.forward_image(image)["backbone_fpn"]
        ours = ImageEncoderGraph(model)(image)
        for a, b in zip(ours, (official[-1], official[0], official[1])):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert not any("forward" in vars(b) for b in trunk.modules() if isinstance(b, MultiScaleBlock))
