"""ort-gpu provider selection and the TensorRT execution provider's options, built on CPU (no GPU needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sam2rt import contract as C
from sam2rt.engines.config import BuildConfig
from sam2rt.errors import Sam2rtError
from sam2rt.runtime.backends import ort_gpu
from sam2rt.runtime.backends.ort_gpu import CPU_EP, CUDA_EP, TRT_EP, gpu_providers, tensorrt_provider_options


def _parse(text: str) -> dict[str, tuple[int, ...]]:
    """ORT's "name:2x3,other:4" back to {name: shape}."""
    return {name: tuple(int(d) for d in dims.split("x")) for name, dims in (p.split(":") for p in text.split(","))}


def test_tensorrt_options_carry_the_contract_profiles_and_caches(tmp_path: Path) -> None:
    cfg = BuildConfig(max_objects=4, max_points=3, workspace_gib=2.0)
    opts = tensorrt_provider_options(C.MEMORY_ENCODER, 256, tmp_path, cfg)
    assert opts["trt_engine_cache_enable"] == "True" and opts["trt_engine_cache_path"] == str(tmp_path)
    assert opts["trt_timing_cache_enable"] == "True" and opts["trt_max_workspace_size"] == str(2 << 30)
    lo, opt, hi = (_parse(opts[f"trt_profile_{w}_shapes"]) for w in ("min", "opt", "max"))
    assert set(hi) == {"mask_logits", "binarize", "object_score_logits"}  # vision_feat is static: no profile
    assert lo["mask_logits"] == (1, 1, 64, 64) and opt["mask_logits"] == (1, 1, 64, 64)
    assert hi["mask_logits"] == (4, 1, 64, 64) and hi["binarize"] == (4,) and hi["object_score_logits"] == (4, 1)
    points = _parse(tensorrt_provider_options(C.MASK_DECODER, 256, tmp_path, cfg)["trt_profile_max_shapes"])
    assert points["point_coords"] == (4, 5, 2)  # 3 clicks + a box's 2 corners
    assert "trt_profile_min_shapes" not in tensorrt_provider_options(C.IMAGE_ENCODER, 256, tmp_path, cfg)


def test_cuda_is_the_default_and_tensorrt_only_on_request(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ort_gpu.ort, "get_available_providers", lambda: [TRT_EP, CUDA_EP, CPU_EP])
    names, options = gpu_providers(C.MEMORY_ENCODER, 256)
    assert names == [CUDA_EP, CPU_EP] and options == [{}, {}]  # TensorRT present but not auto-selected
    names, options = gpu_providers(C.MEMORY_ENCODER, 256, ["tensorrt", "cuda"], tmp_path / "cache")
    assert names == [TRT_EP, CUDA_EP, CPU_EP]
    assert options[0]["trt_engine_cache_path"] == str(tmp_path / "cache") and (tmp_path / "cache").is_dir()
    with pytest.raises(Sam2rtError, match="cache directory"):
        gpu_providers(C.MEMORY_ENCODER, 256, ["tensorrt"])
    with pytest.raises(Sam2rtError, match="unknown execution provider"):
        gpu_providers(C.MEMORY_ENCODER, 256, ["rocm"])


def test_missing_providers_say_what_to_install(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ort_gpu.ort, "get_available_providers", lambda: [CUDA_EP, CPU_EP])
    with pytest.raises(Sam2rtError, match="no TensorRT execution provider"):
        gpu_providers(C.MEMORY_ENCODER, 256, ["tensorrt"], tmp_path)
    monkeypatch.setattr(ort_gpu.ort, "get_available_providers", lambda: [CPU_EP])
    with pytest.raises(Sam2rtError, match="onnxruntime-gpu"):
        gpu_providers(C.MEMORY_ENCODER, 256)
