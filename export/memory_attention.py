"""Export wrapper: memory attention over a fixed-capacity, masked memory bank.

The official code concatenates only the memories that exist; here every slot is present and invalid
ones get an additive -inf-like bias on the attention logits, which gives the same softmax over the
valid keys. RoPE uses real cos/sin tables (the exporter cannot handle complex tensors).

Two forms of the attention products (``ATTENTION_FORMS``), equal up to float rounding:

- "fused" (default; every graph that goes to TensorRT): ``softmax((Q·s)·Kᵀ + mask)·V`` with Q, K and V of
  the same head size -- the scale on Q before the first product, one additive mask, the softmax straight into
  the second product. That is the pattern TensorRT's attention fusion matches (docs/gpu.md).
- "cpu": the value projection of the memory tokens after the weighted sum, ``(softmax(...)·v)·Wᵀ + b``, with
  the unprojected 64-wide v: 4x fewer multiply-adds in the largest product of the graph, a different head
  size for V, so TensorRT cannot fuse it. For ONNX Runtime CPU only (``sam2rt export --attention cpu``).
  It also spends fewer passes over memory on layout (every SAM 2 / EdgeTAM memory attention has one head):
  heads by ``unsqueeze`` instead of a reshape + transpose copy, and RoPE as ``u·C + u'·S``, where ``u'`` is a
  second projection whose weight rows are each channel pair (re, im) of the first as (-im, re), instead of
  splitting the pairs, rotating and restacking them: the same values (negation is exact and a + b = b + a),
  four element-wise passes instead of nine, and no copies. And every object's first layer starts from the same
  frame tokens, so that layer's self-attention and cross-attention queries run once, on one object's worth of
  tokens, and broadcast against each object's keys (bit-equal; the fused form keeps a copy per object, as
  TensorRT's attention fusion expects Q, K and V of one batch).

Both put the scale on Q (T·d multiplies instead of T·K on the logits).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from sam2.modeling.sam2_utils import get_1d_sine_pe

# Additive logit bias of an empty slot. Finite in FP16 with room for the logit added to it (FP16 max 65504:
# logit + bias never overflows to -inf, which would make a row with every key masked NaN), and far enough
# below any attention logit (O(10) here) that exp() underflows to exactly 0 in FP32 and FP16: masked keys get
# weight 0, as if absent. -3.4e38 (float32 min) was exact too but not representable in FP16, which kept
# the attention logits of FP16 graphs in FP32 and so blocked TensorRT's fused attention.
MASKED_LOGIT = -1.0e4
ATTENTION_FORMS = ("fused", "cpu")


def _rope_tables(attn: nn.Module, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of the official axial RoPE for a side x side grid: two ``(side*side, head_dim/2)`` tables."""
    freqs = attn.compute_cis(end_x=side, end_y=side)  # the module's own dim and theta  # (side*side, d/2) complex
    return freqs.real.float().contiguous(), freqs.imag.float().contiguous()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs of ``x (B, heads, L, D)`` by angles with cos/sin ``(L, D/2)``."""
    pairs = x.reshape(*x.shape[:-1], -1, 2)  # (B, heads, L, D/2, 2)
    re, im = pairs[..., 0], pairs[..., 1]
    out = torch.stack([re * cos - im * sin, re * sin + im * cos], dim=-1)
    return out.flatten(-2)


def _heads(x: torch.Tensor, n: int) -> torch.Tensor:
    b, t, c = x.shape
    if n == 1:  # no copy: ONNX Runtime runs the transpose of the reshape below as a real transpose
        return x.unsqueeze(1)
    return x.reshape(b, t, n, c // n).transpose(1, 2)  # (B, heads, T, C/heads)


def _project(attn: nn.Module, proj: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return _heads(proj(x), attn.num_heads)


def pair_tables(cos: torch.Tensor, sin: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L, D/2)`` cos/sin -> ``(L, heads*D)``: each angle for both channels of its pair, in every head."""
    return cos.repeat_interleave(2, dim=-1).repeat(1, heads), sin.repeat_interleave(2, dim=-1).repeat(1, heads)


def swapped(proj: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of the projection whose output pairs are ``proj``'s (re, im) pairs as (-im, re)."""
    with torch.no_grad():
        w, b = proj.weight.reshape(-1, 2, proj.weight.shape[1]), proj.bias.reshape(-1, 2)
        return (torch.stack([-w[:, 1], w[:, 0]], 1).reshape_as(proj.weight).clone(),
                torch.stack([-b[:, 1], b[:, 0]], 1).reshape(-1).clone())


class RotatedProjections(nn.Module):
    """The "cpu" form's constants for one attention layer: :func:`swapped` of each rotated projection, as
    buffers (initializers of the graph), so tracing sees weights, not arithmetic on them."""

    def __init__(self, projections: dict[str, nn.Linear]) -> None:
        super().__init__()
        for name, proj in projections.items():
            w, b = swapped(proj)
            self.register_buffer(f"{name}_w", w)
            self.register_buffer(f"{name}_b", b)

    def get(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"{name}_w"), getattr(self, f"{name}_b")


def project_rotated(attn: nn.Module, proj: nn.Linear, x: torch.Tensor, cos2: torch.Tensor, sin2: torch.Tensor,
                    swap: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``_rotate(_project(attn, proj, x), cos, sin)`` as ``u·C + u'·S`` (the "cpu" form; see module).

    x (B, G*L, c): G groups of the L positions of the ``(L, heads*D)`` tables from :func:`pair_tables` (memory
    frames share one grid). re·cos + (-im)·sin = re·cos - im·sin and im·cos + re·sin = re·sin + im·cos exactly.
    """
    u, u2 = proj(x), F.linear(x, *swap)
    batch, tokens, width = u.shape
    grid = (batch, tokens // cos2.shape[0], cos2.shape[0], width)
    out = u.reshape(grid) * cos2 + u2.reshape(grid) * sin2
    return _heads(out.reshape(batch, tokens, width), attn.num_heads)


def _attend(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
            v_proj: nn.Linear | None = None) -> torch.Tensor:
    """Softmax attention of headed ``q (B,n,T,d)`` over ``k, v (B,n,K,d)``, bias ``(B,1,1,K)``, then out_proj.

    With ``v_proj`` (the "cpu" form), ``v`` is the unprojected ``(B, K, c)`` and the projection follows the
    weighted sum: softmax(QKᵀ)·(V Wᵀ + b) = (softmax(QKᵀ)·V)·Wᵀ + b, since every softmax row sums to 1.
    """
    q = q * (1.0 / math.sqrt(q.shape[-1]))  # scale before the product: TensorRT's fusable form
    logits = q @ k.transpose(-1, -2)  # (B, n, T, K)
    if bias is not None:
        logits = logits + bias
    probs = torch.softmax(logits, dim=-1)
    if v_proj is None:
        out = probs @ v  # (B, n, T, d)
    else:
        n, d = q.shape[1], q.shape[-1]
        weight = v_proj.weight.reshape(n, d, -1).transpose(-1, -2)  # (n, c, d): head h's columns of Wᵀ
        if n == 1:  # every SAM 2 memory attention: a plain 2-D weight, which INT8 quantizes per output channel
            weight = weight[0]  # (c, d); a folded (1, c, d) initializer gets per-channel scales on the wrong axis
        out = (probs @ v.unsqueeze(1)) @ weight + v_proj.bias.reshape(n, 1, d)  # (B, n, T, d)
    b, n, t, d = out.shape
    return attn.out_proj(out.squeeze(1) if n == 1 else out.transpose(1, 2).reshape(b, t, n * d))


def rope_self_attention(attn: nn.Module, qk: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                        tables: tuple[torch.Tensor, torch.Tensor] | None = None,
                        rotated: RotatedProjections | None = None) -> torch.Tensor:
    """The official RoPEAttention when queries and keys are the same hw tokens; with ``tables`` (the "cpu"
    form: :func:`pair_tables` of cos/sin) and ``rotated`` ("q", "k"), RoPE by :func:`project_rotated`."""
    if tables is not None and rotated is not None:
        q = project_rotated(attn, attn.q_proj, qk, *tables, rotated.get("q"))
        k = project_rotated(attn, attn.k_proj, qk, *tables, rotated.get("k"))
    else:
        q = _rotate(_project(attn, attn.q_proj, qk), cos, sin)
        k = _rotate(_project(attn, attn.k_proj, qk), cos, sin)
    return _attend(attn, q, k, _project(attn, attn.v_proj, v), None)


def rope_cross_attention(
    attn: nn.Module,
    q: torch.Tensor,  # (B, hw, 256)
    k_frames: torch.Tensor,  # (B, M*hw, 64): memory frames, rotated like the query (rope_k_repeat)
    k_ptrs: torch.Tensor,  # (B, Kp, 64): pointer tokens, not rotated (num_k_exclude_rope)
    v: torch.Tensor,  # (B, M*hw + Kp, 64)
    cos: torch.Tensor,
    sin: torch.Tensor,
    bias: torch.Tensor,  # (B, 1, 1, M*hw + Kp)
    form: str = "fused",
    tables: tuple[torch.Tensor, torch.Tensor] | None = None,  # "cpu": pair_tables(cos, sin)
    rotated: RotatedProjections | None = None,  # "cpu": swapped q_proj ("q") and k_proj ("k")
) -> torch.Tensor:
    """The official RoPEAttention for cross-attention to memories, with masked keys (``form``: see module)."""
    if form == "cpu":
        q = project_rotated(attn, attn.q_proj, q, *tables, rotated.get("q"))
        kf = project_rotated(attn, attn.k_proj, k_frames, *tables, rotated.get("k"))
        k = torch.cat([kf, _project(attn, attn.k_proj, k_ptrs)], dim=2)
        return _attend(attn, q, k, v, bias, v_proj=attn.v_proj)
    q = _rotate(_project(attn, attn.q_proj, q), cos, sin)
    kf = _project(attn, attn.k_proj, k_frames)  # (B, n, M*hw, d)
    b, n, _, d = kf.shape
    kf = _rotate(kf.reshape(b, n, -1, cos.shape[0], d), cos, sin).reshape(b, n, -1, d)
    k = torch.cat([kf, _project(attn, attn.k_proj, k_ptrs)], dim=2)
    return _attend(attn, q, k, _project(attn, attn.v_proj, v), bias)  # V (B, n, K, d): the head size of Q and K


def add_cpu_rope(graph: nn.Module, tables: dict[str, tuple[torch.Tensor, torch.Tensor, nn.Module]],
                 layers: nn.ModuleList) -> None:
    """The "cpu" form's constants on a memory-attention graph module: ``{name}_cos2`` / ``{name}_sin2`` buffers
    (:func:`pair_tables` of each ``name: (cos, sin, attention)``) and ``rotated``, one
    :class:`RotatedProjections` of the self- and cross-attention q/k projections per layer."""
    for name, (cos, sin, attn) in tables.items():
        cos2, sin2 = pair_tables(cos, sin, attn.num_heads)
        graph.register_buffer(f"{name}_cos2", cos2)
        graph.register_buffer(f"{name}_sin2", sin2)
    graph.rotated = nn.ModuleList(
        RotatedProjections({"self_q": l.self_attn.q_proj, "self_k": l.self_attn.k_proj,
                            "cross_q": l.cross_attn_image.q_proj, "cross_k": l.cross_attn_image.k_proj})
        for l in layers)


class _Prefixed:
    """One attention's entries of a layer's :class:`RotatedProjections` ("q", "k")."""

    def __init__(self, rotated: RotatedProjections, prefix: str) -> None:
        self.rotated, self.prefix = rotated, prefix

    def get(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rotated.get(self.prefix + name)


class MemoryAttentionGraph(nn.Module):
    """Condition the current frame's feature on each object's memory bank (see contract MEMORY_ATTENTION)."""

    def __init__(self, model: nn.Module, image_size: int, form: str = "fused") -> None:
        super().__init__()
        assert model.directly_add_no_mem_embed, "every official config adds no_mem_embed directly"
        assert form in ATTENTION_FORMS, form
        self.model, self.form = model, form
        side = image_size // 16
        neck_pos = model.image_encoder.neck.position_encoding(torch.zeros(1, model.hidden_dim, side, side))
        mem_pos = model.memory_encoder.position_encoding(torch.zeros(1, model.mem_dim, side, side))
        layer = model.memory_attention.layers[0]
        self_cos, self_sin = _rope_tables(layer.self_attn, side)
        cross_cos, cross_sin = _rope_tables(layer.cross_attn_image, side)
        self.register_buffer("curr_pos", neck_pos.flatten(2).transpose(1, 2))  # (1, hw, 256)
        self.register_buffer("mem_pos", mem_pos.flatten(2).transpose(1, 2)[0])  # (hw, 64)
        self.register_buffer("self_cos", self_cos)
        self.register_buffer("self_sin", self_sin)
        self.register_buffer("cross_cos", cross_cos)
        self.register_buffer("cross_sin", cross_sin)
        if form == "cpu":
            add_cpu_rope(self, {"self": (self_cos, self_sin, layer.self_attn),
                                "cross": (cross_cos, cross_sin, layer.cross_attn_image)}, model.memory_attention.layers)

    def _pointer_tokens(self, obj_ptrs: torch.Tensor, obj_ptr_tpos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Split each 256-d pointer into 64-d tokens, as the official code does: ``(B, P*4, 64)`` twice."""
        m = self.model
        P, B, C = obj_ptrs.shape
        split = C // m.mem_dim
        if m.add_tpos_enc_to_obj_ptrs:
            tpos_dim = C if m.proj_tpos_enc_in_obj_ptrs else m.mem_dim
            pos = m.obj_ptr_tpos_proj(get_1d_sine_pe(obj_ptr_tpos, dim=tpos_dim))  # (P, B, 64)
        else:
            pos = obj_ptrs.new_zeros(P, B, m.mem_dim)
        tokens = obj_ptrs.reshape(P, B, split, m.mem_dim).permute(1, 0, 2, 3).reshape(B, P * split, m.mem_dim)
        # each pointer's encoding for each of its split tokens; expand, not repeat_interleave, which traces to
        # OneHot -> Tile chains that TensorRT cannot parse
        pos = pos.permute(1, 0, 2).unsqueeze(2).expand(B, P, split, m.mem_dim).reshape(B, P * split, m.mem_dim)
        return tokens, pos

    def forward(
        self,
        vision_feat: torch.Tensor,  # (1, 256, h, h)
        memory: torch.Tensor,  # (M, B, T, 64): T = hw (SAM 2's memory map) or EdgeTAM's latents
        memory_valid: torch.Tensor,  # (M, B) bool
        memory_tpos: torch.Tensor,  # (M, B) int32
        obj_ptrs: torch.Tensor,  # (P, B, 256)
        obj_ptr_valid: torch.Tensor,  # (P, B) bool
        obj_ptr_tpos: torch.Tensor,  # (P, B) float32
    ) -> torch.Tensor:
        """Also EdgeTAM's (``export.edgetam_graphs``): only ``self.mem_pos`` (T tokens) and ``_layer`` differ."""
        m, attn = self.model, self.model.memory_attention
        M, B, HW, Cm = memory.shape  # HW: tokens per memory
        P = obj_ptrs.shape[0]
        C, side = vision_feat.shape[1], vision_feat.shape[-1]
        curr = vision_feat.flatten(2).transpose(1, 2)  # (1, hw, 256): the same frame for every object
        if self.form != "cpu":
            curr = curr.expand(B, side * side, C)  # (B, hw, 256)
        # "cpu": every object's first layer starts from the same tokens, so its self-attention and cross-attention
        # queries run once, on (1, hw, 256), and broadcast against each object's keys; (B, hw, 256) from there on

        tpos = m.maskmem_tpos_enc.reshape(-1, Cm)[memory_tpos.long()]  # (M, B, 64)
        mem = memory.permute(1, 0, 2, 3).reshape(B, M * HW, Cm)
        mem_pos = (self.mem_pos + tpos.unsqueeze(2)).permute(1, 0, 2, 3).reshape(B, M * HW, Cm)
        ptr_tok, ptr_pos = self._pointer_tokens(obj_ptrs, obj_ptr_tpos)
        valid = torch.cat(
            [
                memory_valid.transpose(0, 1).unsqueeze(-1).expand(B, M, HW).reshape(B, M * HW),
                obj_ptr_valid.transpose(0, 1).unsqueeze(-1).expand(B, P, C // Cm).reshape(B, P * (C // Cm)),
            ],
            dim=1,
        )  # (B, K)
        bias = torch.where(valid, 0.0, MASKED_LOGIT)[:, None, None, :]  # (B, 1, 1, K)

        out = curr + 0.1 * self.curr_pos if attn.pos_enc_at_input else curr
        for i, layer in enumerate(attn.layers):
            out = self._layer(layer, out, (mem, mem_pos), (ptr_tok, ptr_pos), bias, i)
        out = attn.norm(out)

        has_memory = valid.any(dim=1)[:, None, None]  # (B, 1, 1)
        out = torch.where(has_memory, out, curr + m.no_mem_embed)  # (B, hw, 256)
        return out.transpose(1, 2).reshape(B, C, side, side)

    def _self_attention(self, layer, tgt: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A layer's first half (also EdgeTAM's): ``tgt`` after RoPE self-attention, and its cross-attention
        queries (before projection)."""
        cpu = self.form == "cpu"
        x = layer.norm1(tgt)
        qk = x + self.curr_pos if layer.pos_enc_at_attn else x
        tgt = tgt + rope_self_attention(layer.self_attn, qk, x, self.self_cos, self.self_sin,
                                        (self.self_cos2, self.self_sin2) if cpu else None,
                                        _Prefixed(self.rotated[index], "self_") if cpu else None)
        x = layer.norm2(tgt)
        return tgt, (x + self.curr_pos if layer.pos_enc_at_cross_attn_queries else x)

    def _layer(self, layer, tgt, frames, ptrs, bias, index):
        """One MemoryAttentionLayer: RoPE self-attention, masked RoPE cross-attention, MLP."""
        cpu = self.form == "cpu"
        tgt, q = self._self_attention(layer, tgt, index)
        (mem, mem_pos), (ptr, ptr_pos) = frames, ptrs
        if layer.pos_enc_at_cross_attn_keys:
            kf, kp = mem + mem_pos, ptr + ptr_pos
        else:
            kf, kp = mem, ptr
        v = torch.cat([mem, ptr], dim=1)
        tgt = tgt + rope_cross_attention(layer.cross_attn_image, q, kf, kp, v, self.cross_cos, self.cross_sin, bias,
                                         self.form, (self.cross_cos2, self.cross_sin2) if cpu else None,
                                         _Prefixed(self.rotated[index], "cross_") if cpu else None)
        x = layer.norm3(tgt)
        return tgt + layer.linear2(layer.activation(layer.linear1(x)))
