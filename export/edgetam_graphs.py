"""Export wrappers for EdgeTAM's two memory graphs: the memory encoder with the spatial perceiver, and memory
attention over the perceiver's compressed memories.

EdgeTAM (facebookresearch/EdgeTAM) keeps SAM 2's image-encoder interface, prompt encoder and mask decoder, so
``ImageEncoderGraph`` exports it unchanged and ``MaskDecoderGraph`` with one traceable point embedding (below).
What differs is memory:

* the official ``_encode_new_memory`` runs the memory encoder and then ``spatial_perceiver``, which turns the
  (B, 64, h, h) memory map into T = 256 global + 256 2-D latents (B, T, 64). It runs once per memory, so it
  belongs in the memory-encoder graph: the bank stores latents, and attention never sees the full map.
* the latents' positional encoding is a constant (zeros for the global latents, a sine table on the 16 x 16
  latent grid for the 2-D ones), baked into memory attention like SAM 2's memory positional encoding.
* cross-attention is ``RoPEAttentionv2``: queries rotate on the h x h grid, keys only on the 2-D latents of
  each memory (the 16 x 16 grid, repeated per memory); global latents and pointer tokens are not rotated.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sam2rt.export.memory_attention import (ATTENTION_FORMS, MemoryAttentionGraph, _attend, _Prefixed,
                                            _project, _rope_tables, _rotate, add_cpu_rope, project_rotated)
from sam2rt.export.mask_decoder import MaskDecoderGraph
from sam2rt.export.memory_encoder import MemoryEncoderGraph


def latent_pos(model: nn.Module) -> torch.Tensor:
    """The perceiver's positional encoding of one memory's latents, ``(T, 64)``: what the official perceiver
    returns as ``maskmem_pos_enc`` for any input (it depends on no feature value)."""
    h = model.image_size // 16
    feat = torch.zeros(1, model.mem_dim, h, h)
    pos = model.memory_encoder.position_encoding(feat)
    _, latent_pos_enc = model.spatial_perceiver(feat, pos)
    return latent_pos_enc[0].detach()


def memory_tokens(model: nn.Module) -> int:
    """Latents per memory (contract symbol T): global latents + 2-D latents."""
    p = model.spatial_perceiver
    return max(p.num_latents, 0) + max(p.num_latents_2d, 0)


class EdgeTamMemoryEncoderGraph(MemoryEncoderGraph):
    """Masks of B objects on the current frame -> perceiver latents ``memory (B, T, 64)`` (contract
    MEMORY_ENCODER with T = memory tokens). Mask upsampling, binarisation, scale/bias and the no-object
    embedding are SAM 2's (the parent class); the perceiver follows, with the map's constant sine encoding."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        h = model.image_size // 16
        self.register_buffer("map_pos", model.memory_encoder.position_encoding(torch.zeros(1, model.mem_dim, h, h)))

    def forward(self, vision_feat: torch.Tensor, *masks: torch.Tensor) -> torch.Tensor:
        """SAM 2's inputs (``vision_feat (1, 256, h, h)``, then mask_logits, binarize, object_score_logits)."""
        feats = super().forward(vision_feat, *masks)  # (B, hw, 64)
        B, _, c = feats.shape
        side = vision_feat.shape[-1]
        feats = feats.transpose(1, 2).reshape(B, c, side, side)  # (B, 64, h, h)
        return perceive(self.model.spatial_perceiver, feats, self.map_pos)  # (B, T, 64)


def perceive(p: nn.Module, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """The official ``PerceiverResampler.forward`` latents for B objects: ``x (B, 64, h, h)``, ``pos (1, 64, h, h)``
    -> ``(B, T, 64)``, global latents then 2-D latents.

    Same modules and order as the official ``forward_1d`` / ``forward_2d``; the official ``forward_2d`` only runs
    with B = 1 (it views an expanded tensor: upstream EdgeTAM#15), so the 2-D latents are tiled with ``reshape``
    here, which gives each object what the official code gives it alone (verified per object at export).
    """
    B, C, H, W = x.shape
    tokens = x.permute(0, 2, 3, 1)  # (B, h, h, 64)
    out = []
    if p.num_latents > 0:  # global latents attend to the whole map, with its positional encoding
        latents = p.latents.unsqueeze(0).expand(B, -1, -1)  # (B, 256, 64)
        flat, flat_pos = tokens.flatten(1, 2), pos.permute(0, 2, 3, 1).flatten(1, 2).expand(B, -1, -1)
        for layer in p.layers:
            latents = layer(latents, flat, flat_pos)
        out.append(p.norm(latents))
    if p.num_latents_2d > 0:  # one latent per window of the map, no positional encoding
        n = int(math.isqrt(p.num_latents_2d))
        ws = H // n
        windows = tokens.reshape(B, n, ws, n, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(B * n * n, ws * ws, C)
        latents = p.latents_2d.unsqueeze(0).expand(B, -1, -1).reshape(B * n * n, 1, C)
        for layer in p.layers:
            latents = layer(latents, windows)
        out.append(p.norm(latents.reshape(B, n * n, C)))
    return torch.cat(out, dim=1)


def _rope_cross_attention_v2(attn: nn.Module, q: torch.Tensor, k_mem: torch.Tensor, k_ptrs: torch.Tensor,
                             v: torch.Tensor, q_cos_sin: tuple[torch.Tensor, torch.Tensor],
                             k_cos_sin: tuple[torch.Tensor, torch.Tensor], n_unrotated: int,
                             bias: torch.Tensor, form: str = "fused", tables: tuple | None = None,
                             rotated: _Prefixed | None = None) -> torch.Tensor:
    """The official ``RoPEAttentionv2`` with masked keys (``form``: as SAM 2's, ``export.memory_attention``).

    The "cpu" form rotates by ``project_rotated`` with ``tables`` = (q cos, q sin, k cos, k sin) as
    ``pair_tables``, the key tables over one memory's T tokens with cos 1 / sin 0 on the global latents
    (u·1 + u'·0 = u exactly), and ``rotated`` the swapped q_proj / k_proj.

    q (B, hw, 256); k_mem (B, M*T, 64): memories, each T tokens of which the first ``n_unrotated`` (global
    latents) keep their position and the rest (2-D latents) rotate on the latent grid; k_ptrs (B, Kp, 64)
    pointer tokens (not rotated); v (B, M*T + Kp, 64); bias (B, 1, 1, M*T + Kp).
    """
    if form == "cpu":
        qc, qs, kc, ks = tables
        qh = project_rotated(attn, attn.q_proj, q, qc, qs, rotated.get("q"))
        km = project_rotated(attn, attn.k_proj, k_mem, kc, ks, rotated.get("k"))
        k = torch.cat([km, _project(attn, attn.k_proj, k_ptrs)], dim=2)
        return _attend(attn, qh, k, v, bias, v_proj=attn.v_proj)
    qh = _rotate(_project(attn, attn.q_proj, q), *q_cos_sin)  # (B, n, hw, d)
    km = _project(attn, attn.k_proj, k_mem)  # (B, n, M*T, d)
    b, n, _, d = km.shape
    grid = k_cos_sin[0].shape[0]
    km = km.reshape(b, n, -1, n_unrotated + grid, d)  # (B, n, M, T, d)
    rotated = _rotate(km[:, :, :, n_unrotated:], *k_cos_sin)
    km = torch.cat([km[:, :, :, :n_unrotated], rotated], dim=3).reshape(b, n, -1, d)
    k = torch.cat([km, _project(attn, attn.k_proj, k_ptrs)], dim=2)
    return _attend(attn, qh, k, _project(attn, attn.v_proj, v), bias)  # V with the head size of Q and K


class EdgeTamMemoryAttentionGraph(nn.Module):
    """Condition the current frame's feature on each object's compressed memories (contract MEMORY_ATTENTION,
    memory ``(M, B, T, 64)``): the official ``_prepare_memory_conditioned_features`` + ``MemoryAttention``."""

    def __init__(self, model: nn.Module, image_size: int, form: str = "fused") -> None:
        super().__init__()
        assert model.directly_add_no_mem_embed, "the EdgeTAM config adds no_mem_embed directly"
        assert form in ATTENTION_FORMS, form
        self.model, self.form = model, form
        side = image_size // 16
        neck_pos = model.image_encoder.neck.position_encoding(torch.zeros(1, model.hidden_dim, side, side))
        layer = model.memory_attention.layers[0]
        cross = layer.cross_attn_image
        p = model.spatial_perceiver
        self.n_unrotated = max(p.num_latents, 0)  # global latents: no RoPE (the official no_rope_tokens)
        self_cos, self_sin = _rope_tables(layer.self_attn, side)
        q_cos, q_sin = _rope_tables(cross, side)
        self.register_buffer("curr_pos", neck_pos.flatten(2).transpose(1, 2))  # (1, hw, 256)
        self.register_buffer("mem_pos", latent_pos(model))  # (T, 64)
        self.register_buffer("self_cos", self_cos)
        self.register_buffer("self_sin", self_sin)
        self.register_buffer("q_cos", q_cos)
        self.register_buffer("q_sin", q_sin)
        self.register_buffer("k_cos", cross.freqs_cis_k.real.float().contiguous())  # (grid, d/2)
        self.register_buffer("k_sin", cross.freqs_cis_k.imag.float().contiguous())
        if form == "cpu":  # the "cpu" form's RoPE tables and swapped projections (export.memory_attention)
            n = self.n_unrotated
            k_cos = torch.cat([torch.ones(n, self.k_cos.shape[1]), self.k_cos])  # global latents: angle 0
            k_sin = torch.cat([torch.zeros(n, self.k_sin.shape[1]), self.k_sin])
            add_cpu_rope(self, {"self": (self_cos, self_sin, layer.self_attn), "q": (q_cos, q_sin, cross),
                                "k": (k_cos, k_sin, cross)}, model.memory_attention.layers)

    # Pointers are split into 64-d tokens as in SAM 2 (the EdgeTAM config adds them no temporal encoding).
    _pointer_tokens = MemoryAttentionGraph._pointer_tokens

    forward = MemoryAttentionGraph.forward  # memory (M, B, T, 64): T latents per memory
    _self_attention = MemoryAttentionGraph._self_attention

    def _layer(self, layer, tgt, frames, ptrs, bias, index):
        """One MemoryAttentionLayer: RoPE self-attention, masked RoPEv2 cross-attention, MLP."""
        (mem, mem_pos), (ptr, ptr_pos) = frames, ptrs
        cpu = self.form == "cpu"
        tgt, q = self._self_attention(layer, tgt, index)
        kf, kp = (mem + mem_pos, ptr + ptr_pos) if layer.pos_enc_at_cross_attn_keys else (mem, ptr)
        v = torch.cat([mem, ptr], dim=1)
        tgt = tgt + _rope_cross_attention_v2(layer.cross_attn_image, q, kf, kp, v, (self.q_cos, self.q_sin),
                                             (self.k_cos, self.k_sin), self.n_unrotated, bias, self.form,
                                             (self.q_cos2, self.q_sin2, self.k_cos2, self.k_sin2) if cpu else None,
                                             _Prefixed(self.rotated[index], "cross_") if cpu else None)
        x = layer.norm3(tgt)
        return tgt + layer.linear2(layer.activation(layer.linear1(x)))



class EdgeTamMaskDecoderGraph(MaskDecoderGraph):
    """SAM 2's decoder graph. EdgeTAM's prompt encoder is the older SAM 2 one, which embeds points with boolean
    index assignments (``emb[labels == i] += ...``); traced, those fix the object count. The same arithmetic as
    selections: labels -1 (padding) get only the not-a-point embedding, labels 0..3 add their own embedding."""

    def _embed_points(self, point_coords: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
        pe = self.model.sam_prompt_encoder
        B = point_coords.shape[0]
        points = torch.cat([point_coords + 0.5, point_coords.new_zeros(B, 1, 2)], dim=1)  # + the padding point
        labels = torch.cat([point_labels, point_labels.new_full((B, 1), -1)], dim=1)[..., None]  # (B, N+1, 1)
        emb = pe.pe_layer.forward_with_coords(points, pe.input_image_size)  # (B, N+1, 256)
        emb = torch.where(labels == -1, pe.not_a_point_embed.weight, emb)
        for i, weight in enumerate(w.weight for w in pe.point_embeddings):
            emb = torch.where(labels == i, emb + weight, emb)
        return emb
