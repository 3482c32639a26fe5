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


REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository (real videos and images); skips where absent."""
    if not (SHARED_DATA / "videos" / "bedroom_frames").is_dir():
        pytest.skip(f"test data not found at {SHARED_DATA} (expected beside the repository)")
    return SHARED_DATA
