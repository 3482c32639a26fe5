"""The official SAM 2 / SAM 2.1 models and EdgeTAM: names, hydra configs, checkpoint URLs, reference packages,
and where sam2rt caches files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sam2rt.errors import Sam2rtError

_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2"


@dataclass(frozen=True)
class ModelInfo:
    """One official model.

    name: the user-facing name, e.g. ``sam2.1_hiera_tiny``.
    config: the hydra config inside the official ``sam2`` package.
    url: Meta's public checkpoint URL.
    version: ``"2.0"``, ``"2.1"`` or ``"edgetam"``.
    family: ``"sam2"`` (reference: the ``sam2==1.1.0`` package) or ``"edgetam"`` (reference: ``edgetam-dimos``,
        the EdgeTAM repository's ``sam2`` package, in its own environment: ``make edgetam-env``).
    git_blob_sha1: the checkpoint's git object id where the file lives in a git repository (EdgeTAM's
        ``checkpoints/edgetam.pt``): a downloaded file is checked against it.
    """

    name: str
    config: str
    url: str
    version: str
    family: str = "sam2"
    git_blob_sha1: str | None = None


def _model(version: str, size: str, short: str) -> ModelInfo:
    if version == "2.1":
        name, config, release = f"sam2.1_hiera_{size}", f"configs/sam2.1/sam2.1_hiera_{short}.yaml", "092824"
    else:
        name, config, release = f"sam2_hiera_{size}", f"configs/sam2/sam2_hiera_{short}.yaml", "072824"
    return ModelInfo(name=name, config=config, url=f"{_BASE_URL}/{release}/{name}.pt", version=version)


_SIZES = [("tiny", "t"), ("small", "s"), ("base_plus", "b+"), ("large", "l")]
MODELS: dict[str, ModelInfo] = {
    m.name: m for version in ("2.1", "2.0") for size, short in _SIZES for m in [_model(version, size, short)]
}
# EdgeTAM (facebookresearch/EdgeTAM, Apache-2.0): the checkpoint is committed to the repository itself
# (checkpoints/edgetam.pt, commit 9cc44bf); its git object id there is what a download is checked against.
EDGETAM = ModelInfo(
    name="edgetam", config="configs/edgetam.yaml",
    url="https://github.com/facebookresearch/EdgeTAM/raw/9cc44bfe9e16cc374242917b91283c718410ea87/checkpoints/edgetam.pt",
    version="edgetam", family="edgetam", git_blob_sha1="abd54d22bbd22ba3e53cf59a307e59e0f3701be6",
)
MODELS[EDGETAM.name] = EDGETAM


def model_info(name: str) -> ModelInfo:
    """Look a model up by name; unknown names raise with the list of valid ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise Sam2rtError(
            f"unknown model {name!r}; choose one of: {', '.join(MODELS)}"
        ) from None


def default_cache_dir() -> Path:
    """The cache root (checkpoints, calibration inputs): ``$SAM2RT_CACHE`` if set, else ``~/.cache/sam2rt``."""
    env = os.environ.get("SAM2RT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sam2rt"
