"""Verification of EdgeTAM's graphs: SAM 2's checks (``export.verify``) with EdgeTAM's official memory path.

The memory encoder's reference is the official ``_encode_new_memory``, perceiver included: (1, T, 64) latents
per object. Memory attention's reference is the official ``MemoryAttention`` on the concatenation of only the
valid latents, with the perceiver's positional encoding and ``num_spatial_mem`` (RoPEAttentionv2's
per-memory rotation), as ``_prepare_memory_conditioned_features`` calls it.
"""

from __future__ import annotations

import torch

from sam2rt.export.edgetam_graphs import latent_pos
from sam2rt.export.verify import _Verifier


class EdgeTamVerifier(_Verifier):
    """``_Verifier`` with the perceiver's memories."""

    def _memory_layout(self, feats: torch.Tensor) -> torch.Tensor:
        return feats  # (1, T, 64): the perceiver's output is already the graph's layout

    def _memory_pos(self) -> torch.Tensor:
        return latent_pos(self.m)[:, None]  # (T, 1, 64)

    def _attention_kwargs(self, n_memories: int) -> dict:
        return {"num_spatial_mem": n_memories}
