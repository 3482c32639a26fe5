"""Verification of EdgeTAM's graphs: SAM 2's checks (``export.verify``) with EdgeTAM's official memory path.

The memory encoder's reference is the official ``_encode_new_memory``, perceiver included: (1, T, 64) latents
per object. Memory attention's reference is the official ``MemoryAttention`` on the concatenation of only the
valid latents, with the perceiver's positional encoding and ``num_spatial_mem`` (RoPEAttentionv2's
per-memory rotation), as ``_prepare_memory_conditioned_features`` calls it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sam2rt.export.edgetam_graphs import latent_pos
from sam2rt.export.verify import _seq, _Verifier


class EdgeTamVerifier(_Verifier):
    """``_Verifier`` with the perceiver's memories."""

    def _encode_ref(self, mask_logits, binarize, score) -> torch.Tensor:
        """Official latents for each object: (B, T, 64)."""
        outs = []
        for b in range(mask_logits.shape[0]):
            high_res = F.interpolate(mask_logits[b:b + 1], size=(self.S, self.S), mode="bilinear",
                                     align_corners=False)
            feats, _ = self.m._encode_new_memory([_seq(self.feat)], [(self.h, self.h)], high_res,
                                                 score[b:b + 1], is_mask_from_pts=bool(binarize[b]))
            outs.append(feats)  # (1, T, 64): the perceiver's output layout
        return torch.cat(outs)

    def _memory_pos(self) -> torch.Tensor:
        return latent_pos(self.m)[:, None]  # (T, 1, 64)

    def _attention_kwargs(self, n_memories: int) -> dict:
        return {"num_spatial_mem": n_memories}
