"""EdgeTAM fixtures. Its reference (edgetam-dimos) lives in .venv-edgetam (`make edgetam-env`); `make test` runs
this folder there a second time. In the main venv (official sam2==1.1.0) the tests that need it skip. Runtime: 15
tests in 218 s on 2 shared vCPUs (load 6-7), 256 px, in a run where test_variants failed early (fixed
since; with it, about 4 min)."""

from __future__ import annotations

from pathlib import Path

import pytest

SIZE = 256  # the smallest size EdgeTAM's perceiver takes (h = 16: one latent per stride-16 cell)


@pytest.fixture(scope="session")
def edgetam_reference() -> None:
    """Skip unless the importable ``sam2`` is EdgeTAM's."""
    from sam2rt.export.edgetam_model import edgetam_package_installed

    if not edgetam_package_installed():
        pytest.skip("needs the EdgeTAM reference package: runs in .venv-edgetam (make edgetam-env; make test "
                    "runs it there)")


@pytest.fixture(scope="session")
def edgetam_256(edgetam_reference, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """EdgeTAM exported at 256 px with seeded random weights (seed 0), every graph verified against PyTorch."""
    from sam2rt.export.exporter import ExportConfig, export_model

    out = tmp_path_factory.mktemp("edgetam_256")
    export_model(ExportConfig(model="edgetam", out=out, image_size=SIZE, random_seed=0, verify=True), log=print)
    return out


@pytest.fixture(scope="session")
def edgetam_forced(edgetam_reference, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """EdgeTAM @256 whose object score swings around zero between frames: (model dir, checkpoint).

    Random weights alone give every object the same score sign on every frame, which would hide the gating
    branches (as for SAM 2 in tests/conftest.py). verify=False: the x1000 score head amplifies fp32 rounding
    of that one output past the absolute 1e-4 tolerance; the parity tests compare whole tracking runs.
    """
    import torch

    from sam2rt.export.checkpoints import build_model, write_official_checkpoint
    from sam2rt.export.exporter import ExportConfig, export_model

    tmp = tmp_path_factory.mktemp("edgetam_forced")
    model, _ = build_model("edgetam", SIZE, random_seed=0)
    head = model.sam_mask_decoder.pred_obj_score_head.layers[-1]
    with torch.no_grad():
        head.weight.mul_(1000.0)
        head.bias.mul_(1000.0).sub_(SCORE_SHIFT)
    ckpt = write_official_checkpoint(model, tmp / "forced.pt")
    export_model(ExportConfig(model="edgetam", out=tmp / "model", image_size=SIZE, checkpoint=ckpt, verify=False))
    return tmp / "model", ckpt


# Measured with seed 0 at 256 px (bedroom, one click): the raw score is about -0.067 on a prompted frame and
# -0.057 on tracked frames; x1000 and shifted by this, the two land on opposite sides of 0 (about -5 and +5).
SCORE_SHIFT = -62.0
