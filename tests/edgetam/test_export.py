"""EdgeTAM export: four graphs verified against the official EdgeTAM code, per-model dimensions in the manifest,
and a clear message where the EdgeTAM package is missing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sam2rt import contract as C
from sam2rt.errors import Sam2rtError


def test_export_verified_and_manifest_dims(edgetam_256: Path) -> None:
    manifest = json.loads((edgetam_256 / C.MANIFEST_NAME).read_text())
    for spec in C.GRAPHS:
        check = manifest["verification"][spec.name]
        print(f"{spec.name}: max |ONNX - PyTorch| {check['max_abs_diff']:.2e} ({'; '.join(check['cases'])})")
        assert check["passed"] and check["max_abs_diff"] <= 1e-4
    model = manifest["model"]
    assert (model["family"], model["memory_tokens"], model["memory_attention_layers"]) == ("edgetam", 512, 2)
    assert model["perceiver"] == {"latents_1d": 256, "latents_2d": 256, "depth": 2, "in": "memory_encoder"}
    # the bank reads compressed memories: T = 512 latents per slot, not the 16 x 16 = 256 feature map
    memory_in = next(t for t in manifest["graphs"]["memory_attention"]["inputs"] if t["name"] == "memory")
    memory_out = manifest["graphs"]["memory_encoder"]["outputs"][0]
    assert memory_in["shape"] == ["M", "B", 512, 64] and memory_out["shape"] == ["B", 512, 64]
    assert "edgetam-dimos" in manifest["exporter"] and "sam2" not in manifest["exporter"]
    coverage = manifest["verification"]["mask_decoder"]["cases"]
    assert any(c.startswith("objects judged present/absent") for c in coverage)


def test_runtime_bank_holds_latents(edgetam_256: Path) -> None:
    """The preallocated bank's slots are (B, T, 64) with T from the manifest; the memory encoder fills one."""
    from sam2rt.runtime.engine import Engine

    engine = Engine(edgetam_256, threads=1)
    bank = engine.bank(2)
    assert bank.memory.shape == (engine.manifest.bank.memory_slots, 2, 512, C.MEM_DIM)
    rgb = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    feats = engine.features(rgb)
    logits = np.random.default_rng(1).normal(0, 8, (2, 1, 64, 64)).astype(np.float32)
    memory = engine.encode_memory(feats, logits, binarize=True, scores=np.ones((2, 1), np.float32))
    assert memory.shape == (2, 512, C.MEM_DIM) and np.isfinite(memory).all()


def test_missing_reference_says_how_to_get_it(monkeypatch) -> None:
    """Where `sam2` is SAM 2's (the main venv), exporting EdgeTAM names the make target that makes its venv."""
    from sam2rt.export import edgetam_model

    monkeypatch.setattr(edgetam_model, "edgetam_package_installed", lambda: False)
    with pytest.raises(Sam2rtError, match="make edgetam-env"):
        edgetam_model.require_reference("edgetam")


def test_edgetam_size_must_fit_the_perceiver() -> None:
    from sam2rt.export.edgetam_model import check_edgetam_image_size

    check_edgetam_image_size(512)
    with pytest.raises(Sam2rtError, match="multiple of 256"):
        check_edgetam_image_size(384)
