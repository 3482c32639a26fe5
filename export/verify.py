"""Self-verification: each exported graph on ONNX Runtime against the official PyTorch code paths.

The references call the official modules the way ``SAM2VideoPredictor`` does (``forward_image``,
``memory_attention`` on the concatenation of only the valid memories, ``_forward_sam_heads``,
``_encode_new_memory``), one object at a time, so they share no code with the export wrappers beyond
the official submodules themselves. Inputs are realistic: features come from the image encoder on a
seeded image and the memory bank is filled by the memory encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from sam2.modeling.sam2_utils import get_1d_sine_pe

from sam2rt import contract as C

TOLERANCE_FP32 = 1e-4


@dataclass
class GraphCheck:
    """Verification result for one graph."""

    graph: str
    max_abs_diff: float = 0.0
    tolerance: float = TOLERANCE_FP32
    cases: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.max_abs_diff)) and self.max_abs_diff <= self.tolerance

    def add(self, case: str, ours: list[np.ndarray], ref: list[torch.Tensor]) -> None:
        diff = max(float(np.max(np.abs(o - r.detach().numpy()))) if o.size else 0.0 for o, r in zip(ours, ref))
        self.max_abs_diff = max(self.max_abs_diff, diff)
        self.cases.append(f"{case}: {diff:.2e}")

    def as_json(self) -> dict:
        return {"max_abs_diff": self.max_abs_diff, "tolerance": self.tolerance, "passed": self.passed,
                "cases": self.cases}


class _Session:
    def __init__(self, path: Path, spec: C.GraphSpec) -> None:
        self.spec = spec
        self.sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def __call__(self, *args: torch.Tensor) -> list[np.ndarray]:
        feeds = {n: a.detach().numpy() for n, a in zip(self.spec.input_names, args)}
        return self.sess.run(None, feeds)


def _seq(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (hw, B, C), the official token layout."""
    return x.flatten(2).permute(2, 0, 1)


class _Verifier:
    def __init__(self, model, graph_dir: Path, seed: int) -> None:
        self.m = model
        self.S = model.image_size
        self.h = self.S // 16
        self.g = torch.Generator().manual_seed(seed)
        self.sessions = {spec.name: _Session(graph_dir / spec.filename, spec) for spec in C.GRAPHS}

    def randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self.g)

    def image_encoder(self, check: GraphCheck) -> None:
        image = self.randn(1, 3, self.S, self.S).clamp(-2.2, 2.7)  # inside the normalised pixel range
        out = self.m.forward_image(image)
        self.fpn, self.pos = out["backbone_fpn"], out["vision_pos_enc"]
        self.feat = self.fpn[-1]
        ours = self.sessions["image_encoder"](image)
        check.add("seeded frame", ours, [self.fpn[-1], self.fpn[0], self.fpn[1]])

    def _encode_ref(self, mask_logits, binarize, score) -> torch.Tensor:
        """Official memory for each object: (B, hw, 64)."""
        outs = []
        for b in range(mask_logits.shape[0]):
            high_res = F.interpolate(mask_logits[b:b + 1], size=(self.S, self.S), mode="bilinear",
                                     align_corners=False)
            feats, _ = self.m._encode_new_memory([_seq(self.feat)], [(self.h, self.h)], high_res,
                                                 score[b:b + 1], is_mask_from_pts=bool(binarize[b]))
            outs.append(self._memory_layout(feats))
        return torch.cat(outs)

    def _memory_layout(self, feats: torch.Tensor) -> torch.Tensor:
        """The official memory of one object in the graph's layout: ``(1, 64, h, w)`` -> ``(1, hw, 64)``."""
        return feats.flatten(2).transpose(1, 2)

    def memory_encoder(self, check: GraphCheck) -> None:
        B, h4 = 4, 4 * self.h
        logits = self.randn(B, 1, h4, h4) * 8
        logits[3] = C.NO_OBJ_SCORE  # an absent object's gated mask
        binarize = torch.tensor([True, False, True, False])
        score = torch.tensor([[3.0], [-2.0], [-0.5], [C.NO_OBJ_SCORE]])
        ours = self.sessions["memory_encoder"](self.feat, logits, binarize, score)
        check.add("B=4 binarize on/off, present/absent", ours, [self._encode_ref(logits, binarize, score)])

    def _bank(self, M: int, B: int) -> torch.Tensor:
        """A bank filled with real memories: (M, B, hw, 64), bf16-rounded as the runtime stores it."""
        h4 = 4 * self.h
        logits = self.randn(M * B, 1, h4, h4) * 8
        mem = self._encode_ref(logits, torch.ones(M * B, dtype=torch.bool), self.randn(M * B, 1))
        return mem.to(torch.bfloat16).float().reshape(M, B, -1, C.MEM_DIM)

    def _memory_pos(self) -> torch.Tensor:
        """The positional encoding of one memory, as the official bank keeps it: (T, 1, 64)."""
        return _seq(self.m.memory_encoder.position_encoding(self.feat[:, :C.MEM_DIM]))

    def _attention_kwargs(self, n_memories: int) -> dict:
        """Extra arguments of the official memory attention (none for SAM 2)."""
        return {}

    def _attention_ref(self, memory, valid, tpos, ptrs, ptr_valid, ptr_tpos) -> torch.Tensor:
        """Official memory attention per object, on only the valid memories and pointers."""
        m, outs = self.m, []
        mem_pos = self._memory_pos()  # (T, 1, 64)
        for b in range(memory.shape[1]):
            keys = [memory[i, b][:, None] for i in range(memory.shape[0]) if valid[i, b]]
            pos = [mem_pos + m.maskmem_tpos_enc[int(tpos[i, b])] for i in range(memory.shape[0]) if valid[i, b]]
            sel = [p for p in range(ptrs.shape[0]) if ptr_valid[p, b]]
            if not keys and not sel:
                outs.append((_seq(self.feat) + m.no_mem_embed).permute(1, 2, 0).reshape(1, -1, self.h, self.h))
                continue
            n_ptr_tokens, n_memories = 0, len(keys)
            if sel:
                p = ptrs[sel, b][:, None]  # (P', 1, 256)
                if m.add_tpos_enc_to_obj_ptrs:
                    tpos_dim = C.HIDDEN_DIM if m.proj_tpos_enc_in_obj_ptrs else m.mem_dim
                    p_pos = m.obj_ptr_tpos_proj(get_1d_sine_pe(ptr_tpos[sel, b], dim=tpos_dim))[:, None]
                else:
                    p_pos = p.new_zeros(len(sel), 1, m.mem_dim)
                split = C.HIDDEN_DIM // m.mem_dim
                keys.append(p.reshape(-1, 1, split, m.mem_dim).permute(0, 2, 1, 3).flatten(0, 1))
                pos.append(p_pos.repeat_interleave(split, dim=0))
                n_ptr_tokens = len(sel) * split
            out = m.memory_attention(curr=[_seq(self.feat)], curr_pos=[_seq(self.pos[-1])],
                                     memory=torch.cat(keys), memory_pos=torch.cat(pos),
                                     num_obj_ptr_tokens=n_ptr_tokens, **self._attention_kwargs(n_memories))
            outs.append(out.permute(1, 2, 0).reshape(1, -1, self.h, self.h))
        return torch.cat(outs)

    def memory_attention(self, check: GraphCheck, bank: C.BankConfig) -> None:
        M, P, B = bank.memory_slots, bank.ptr_slots, 3
        memory = self._bank(M, B)
        ptrs = self.randn(P, B, C.HIDDEN_DIM)
        tpos = torch.randint(0, self.m.num_maskmem, (M, B), generator=self.g, dtype=torch.int32)
        tpos[:bank.cond_slots] = self.m.num_maskmem - 1  # conditioning frames sit at t_pos 0
        ptr_tpos = torch.randint(-15, 16, (P, B), generator=self.g).float() / 15
        cases = {
            "full bank": (torch.ones(M, B, dtype=torch.bool), torch.ones(P, B, dtype=torch.bool)),
            "partial bank": (torch.rand(M, B, generator=self.g) > 0.5, torch.rand(P, B, generator=self.g) > 0.5),
        }
        valid, pvalid = torch.ones(M, B, dtype=torch.bool), torch.zeros(P, B, dtype=torch.bool)
        valid[:, 1] = False  # object 1: empty bank (first conditioning frame), object 2: no pointers
        pvalid[:3, 0] = True
        valid[1:, 2] = False
        cases["empty / memories only / mixed"] = (valid, pvalid)
        for name, (v, pv) in cases.items():
            v[0, 0] = True  # object 0 always has its conditioning memory
            args = (self.feat, memory, v, tpos, ptrs, pv, ptr_tpos)
            ours = self.sessions["memory_attention"](*args)
            check.add(name, ours, [self._attention_ref(memory, v, tpos, ptrs, pv, ptr_tpos)])
        one = (self.feat, memory[:1, :1], torch.ones(1, 1, dtype=torch.bool), tpos[:1, :1], ptrs[:1, :1],
               torch.ones(1, 1, dtype=torch.bool), ptr_tpos[:1, :1])
        check.add("one slot, one pointer", self.sessions["memory_attention"](*one), [self._attention_ref(*one[1:])])

    def _decoder_ref(self, embed, coords, labels, mask, has_mask, multimask) -> list[torch.Tensor]:
        outs = []
        for b in range(embed.shape[0]):
            r = self.m._forward_sam_heads(
                backbone_features=embed[b:b + 1],
                point_inputs={"point_coords": coords[b:b + 1], "point_labels": labels[b:b + 1]},
                mask_inputs=mask[b:b + 1] if has_mask[b] else None,
                high_res_features=[self.fpn[0], self.fpn[1]],
                multimask_output=bool(multimask[b]),
            )
            ious = r[2]
            iou = ious.gather(1, ious.argmax(-1, keepdim=True)) if multimask[b] else ious[:, :1]
            candidates = self._candidates_ref(embed[b:b + 1], coords[b:b + 1], labels[b:b + 1],
                                              mask[b:b + 1] if has_mask[b] else None, bool(multimask[b]))
            outs.append([r[3], iou, r[5], r[6], *candidates])
        return [torch.cat(x) for x in zip(*outs)]

    def _candidates_ref(self, embed, coords, labels, mask, multimask: bool) -> list[torch.Tensor]:
        """The image predictor's outputs the official way (``SAM2ImagePredictor._predict``): prompt encoder,
        then the mask decoder. Returns all 4 masks (1,4,4h,4h) and IoUs (1,4) (``predict_masks``), and the
        index of the mask ``sam_mask_decoder(multimask_output=...)`` returns (its best-of-3, or its
        stability choice between the single mask and the best of 3)."""
        pe, dec = self.m.sam_prompt_encoder, self.m.sam_mask_decoder
        sparse, dense = pe(points=(coords, labels), boxes=None, masks=mask)
        args = dict(image_embeddings=embed, image_pe=pe.get_dense_pe(), sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense, repeat_image=False, high_res_features=[self.fpn[0], self.fpn[1]])
        masks, ious, _, _ = dec.predict_masks(**args)  # (1, 4, 4h, 4h), (1, 4)
        chosen, _, _, _ = dec(multimask_output=multimask, **args)
        best = 1 + int(ious[0, 1:].argmax())
        index = best if multimask or not torch.equal(chosen[:, 0], masks[:, 0]) else 0
        return [masks, ious, torch.tensor([index], dtype=torch.int32)]

    def mask_decoder(self, check: GraphCheck) -> dict[str, int]:
        """Returns how many objects were judged present/absent, and how many single-mask selections kept the
        single mask (stable) or fell back to the best of 3, so the report shows branch coverage."""
        present = {"present": 0, "absent": 0, "stable": 0, "fallback": 0}
        embed = torch.cat([self.feat, self.feat + 0.5 * self.randn(*self.feat.shape)])  # 2 objects
        B, S, h4 = 2, self.S, 4 * self.h
        cases = {
            "1 click, multimask": ([[1]], [True, True], [False, False]),
            "3 clicks, single mask + stability": ([[1, 0, 1]], [False, False], [False, False]),
            "box + click": ([[2, 3, 1]], [False, False], [False, False]),
            "no points (tracking), mask prompt": ([[-1]], [True, False], [True, True]),
        }
        for name, (labels, multimask, has_mask) in cases.items():
            labels = torch.tensor(labels * B, dtype=torch.int32)
            coords = torch.rand(B, labels.shape[1], 2, generator=self.g) * S
            if name.startswith("box"):
                coords[:, 1] = coords[:, 0] + S / 4  # box corners in order
            if name.startswith("no points"):
                coords.zero_()
            mask = self.randn(B, 1, h4, h4) * 10
            args = (embed, self.fpn[0], self.fpn[1], coords, labels, mask, torch.tensor(has_mask),
                    torch.tensor(multimask))
            ours = self.sessions["mask_decoder"](*args)
            check.add(name, ours, self._decoder_ref(embed, coords, labels, mask, has_mask, multimask))
            for s in ours[3][:, 0]:
                present["present" if s > 0 else "absent"] += 1
            for single, index in zip(~torch.tensor(multimask), ours[6]):
                if single:
                    present["stable" if index == 0 else "fallback"] += 1
        return present


def verify_graphs(model, graph_dir: Path, bank: C.BankConfig, seed: int = 0) -> dict[str, GraphCheck]:
    """Run every graph in ``graph_dir`` on ONNX Runtime and compare with the official PyTorch paths."""
    checks = {spec.name: GraphCheck(spec.name, tolerance=TOLERANCE_FP32) for spec in C.GRAPHS}
    with torch.inference_mode():
        if getattr(model, "spatial_perceiver", None) is not None:
            from sam2rt.export.edgetam_verify import EdgeTamVerifier

            v = EdgeTamVerifier(model, graph_dir, seed)
        else:
            v = _Verifier(model, graph_dir, seed)
        v.image_encoder(checks["image_encoder"])
        v.memory_encoder(checks["memory_encoder"])
        v.memory_attention(checks["memory_attention"], bank)
        coverage = v.mask_decoder(checks["mask_decoder"])
    checks["mask_decoder"].cases.append(f"single-mask selections stable/fallback: {coverage['stable']}/"
                                        f"{coverage['fallback']}")
    checks["mask_decoder"].cases.append(f"objects judged present/absent: {coverage['present']}/{coverage['absent']}")
    return checks


def verify_memory_attention(model, path: Path, bank: C.BankConfig, seed: int = 0) -> GraphCheck:
    """Memory attention alone (e.g. after changing its form): the graph at ``path`` against the official module,
    with image features from PyTorch and memories from the official memory encoder (as ``verify_graphs``)."""
    check = GraphCheck("memory_attention", tolerance=TOLERANCE_FP32)
    with torch.inference_mode():
        v = _Verifier.__new__(_Verifier)
        v.m, v.S, v.h = model, model.image_size, model.image_size // 16
        v.g = torch.Generator().manual_seed(seed)
        v.sessions = {"memory_attention": _Session(path, C.MEMORY_ATTENTION)}
        out = model.forward_image(v.randn(1, 3, v.S, v.S).clamp(-2.2, 2.7))
        v.fpn, v.pos = out["backbone_fpn"], out["vision_pos_enc"]
        v.feat = v.fpn[-1]
        v.memory_attention(check, bank)
    return check


def format_table(checks: dict[str, GraphCheck]) -> str:
    """A readable verification table."""
    rows = [f"{'graph':<18} {'max |ONNX - PyTorch|':>22} {'tolerance':>10}  result"]
    for c in checks.values():
        rows.append(f"{c.graph:<18} {c.max_abs_diff:>22.3e} {c.tolerance:>10.0e}  {'ok' if c.passed else 'FAILED'}")
    return "\n".join(rows)
