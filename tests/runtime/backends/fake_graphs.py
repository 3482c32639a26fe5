"""Cheap numpy stand-ins of the four SAM 2 graphs for CPU tests of the live path: deterministic, sensitive to
every input (memories, validity, temporal indices, pointers, clicks), bounded over hundreds of frames; not SAM
2's arithmetic. ``FakeGraphs.runners()`` serve the host executor, ``FakeGraphs.fn(graph)`` the fake engines."""

from __future__ import annotations

from typing import Callable

import numpy as np

from sam2rt import contract as C


def _pool(x: np.ndarray, k: int) -> np.ndarray:
    *lead, H, W = x.shape
    return x.reshape(*lead, H // k, k, W // k, k).mean((-1, -3))


class FakeGraphs:
    """Cheap numpy stand-ins of the four graphs (``runners`` for the host executor, ``fns`` for engines)."""

    def __init__(self, image_size: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.S, self.h = image_size, image_size // 16
        w = lambda *s: (rng.standard_normal(s) / np.sqrt(s[-1])).astype(np.float32)  # noqa: E731
        self.w_v, self.w_s0, self.w_s1 = w(256, 3), w(32, 3), w(64, 3)
        self.w_mem, self.w_enc = w(256, 64), w(64, 256)
        self.w_tpos = np.linspace(0.5, 1.5, 8).astype(np.float32)

    def image_encoder(self, f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        img, h = f["image"][0], self.h
        return {"vision_feat": np.tanh(np.einsum("kc,chw->khw", self.w_v, _pool(img, 16)))[None],
                "feat_s0": np.tanh(np.einsum("kc,chw->khw", self.w_s0, _pool(img, 4)))[None],
                "feat_s1": np.tanh(np.einsum("kc,chw->khw", self.w_s1, _pool(img, 8)))[None]}

    def memory_attention(self, f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        weight = f["memory_valid"] * self.w_tpos[np.clip(f["memory_tpos"], 0, 7)]  # (M, B)
        mem = (weight.astype(np.float32)[:, :, None, None] * f["memory"]).sum(0)  # (B, hw, 64)
        ptr_weight = (f["obj_ptr_valid"] * (1 + f["obj_ptr_tpos"])).astype(np.float32)
        ptr = (ptr_weight[:, :, None] * f["obj_ptrs"]).sum(0)  # (B, 256)
        B, h = mem.shape[0], self.h
        spatial = (mem @ self.w_enc).transpose(0, 2, 1).reshape(B, 256, h, h)
        return {"conditioned_feat": np.tanh(f["vision_feat"] + spatial + 0.1 * ptr[:, :, None, None])}

    def mask_decoder(self, f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        embed = f["image_embed"]
        B, h4 = embed.shape[0], 4 * self.h
        base = np.repeat(np.repeat(embed.mean(1), 4, 1), 4, 2) + 0.5 * f["feat_s0"][0].mean(0)  # (B, h4, h4)
        base = (base + 0.1 * f["has_mask_input"][:, None, None] * f["mask_input"][:, 0]
                + 0.05 * f["multimask"][:, None, None])
        yy, xx = np.mgrid[:h4, :h4].astype(np.float32)
        for b in range(B):
            for (x, y), label in zip(f["point_coords"][b], f["point_labels"][b]):
                if label >= 0:
                    bump = np.exp(-((xx - x * h4 / self.S) ** 2 + (yy - y * h4 / self.S) ** 2) / (h4 / 6) ** 2)
                    base[b] += (3.0 if label == 1 else -3.0) * bump
        low = (4 * np.tanh(base - base.mean((1, 2), keepdims=True) + 0.1)).astype(np.float32)[:, None]
        return {"low_res_masks": low, "iou": np.tanh(low.mean((2, 3))), "obj_ptr": np.tanh(embed.mean((2, 3))),
                "object_score_logits": (1 + low.mean((2, 3))).astype(np.float32),
                "mask_candidates": np.repeat(low, 4, 1), "iou_candidates": np.repeat(low.mean((2, 3)), 4, 1),
                "selected_candidate": np.zeros(B, np.int32)}

    def memory_encoder(self, f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        logits = f["mask_logits"][:, 0]
        m = np.where(f["binarize"][:, None, None], (logits > 0).astype(np.float32),
                     0.5 + 0.5 * np.tanh(0.5 * logits))  # a sigmoid
        m = _pool(m, 4).reshape(m.shape[0], -1)  # (B, hw)
        v = f["vision_feat"][0].reshape(256, -1).T  # (hw, 256)
        mem = np.tanh((v @ self.w_mem)[None] * (1 + m[:, :, None]) + 0.1 * f["object_score_logits"][:, :, None])
        return {"memory": mem.astype(np.float32)}

    def fn(self, graph: str) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
        def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            out = getattr(self, graph)(feeds)
            spec = C.GRAPHS_BY_NAME[graph]
            return {t.name: np.asarray(out[t.name], t.dtype) for t in spec.outputs}
        return run

    def runners(self) -> dict[str, "FakeRunner"]:
        """GraphRunner-like objects for HostExecutor: ``run(feeds, out=...)``."""
        return {spec.name: FakeRunner(self.fn(spec.name)) for spec in C.GRAPHS}


class FakeRunner:
    def __init__(self, fn: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]) -> None:
        self.fn = fn

    def run(self, feeds: dict[str, np.ndarray], out: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        result = self.fn(feeds)
        for name, value in result.items():
            if out is not None and name in out:
                np.copyto(out[name], value)
        return result
