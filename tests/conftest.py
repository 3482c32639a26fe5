"""Shared fixtures. Heavy ones (model exports) are session-scoped and import torch only when used."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def exported_tiny_256(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sam2.1_hiera_tiny exported at image size 256 with seeded random weights (random_seed=0), verified.

    Returns the model directory (manifest.json with its verification table, the four ONNX graphs,
    constants.npz). Verification stays on: tests/export/test_exporter.py checks the recorded results.
    """
    pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from sam2rt.export.exporter import ExportConfig, export_model

    out = tmp_path_factory.mktemp("sam2.1_hiera_tiny_256")
    export_model(ExportConfig(model="sam2.1_hiera_tiny", out=out, image_size=256, random_seed=0, verify=True),
                 log=print)
    return out


@pytest.fixture(scope="session")
def forced_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """sam2.1 tiny @512 whose object score swings around zero from frame to frame: (model dir, checkpoint).

    Random weights alone give every object the same score sign on every frame, which would hide the
    gating branches. Shared by the predictor and stream-tracker parity tests (one export per session).
    """
    torch = pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from sam2rt.export.checkpoints import build_model, write_official_checkpoint
    from sam2rt.export.exporter import ExportConfig, export_model

    tmp = tmp_path_factory.mktemp("parity512")
    model, _ = build_model("sam2.1_hiera_tiny", 512, random_seed=0)
    head = model.sam_mask_decoder.pred_obj_score_head.layers[-1]
    with torch.no_grad():  # measured: random-weight scores sit near 0.16 with ~0.01 spread
        head.weight.mul_(1000.0)
        head.bias.mul_(1000.0).sub_(160.0)
    ckpt = write_official_checkpoint(model, tmp / "forced.pt")
    # verify=False: the x1000 score head amplifies fp32 rounding in that one output past the absolute 1e-4
    # tolerance (its relative error is unchanged); the parity tests compare whole tracking runs instead.
    export_model(ExportConfig(model="sam2.1_hiera_tiny", out=tmp / "model", image_size=512, checkpoint=ckpt,
                              verify=False))
    return tmp / "model", ckpt


REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository (real videos and images); skips where absent."""
    if not (SHARED_DATA / "videos" / "bedroom_frames").is_dir():
        pytest.skip(f"test data not found at {SHARED_DATA} (expected beside the repository)")
    return SHARED_DATA
