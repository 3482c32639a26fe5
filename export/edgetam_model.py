"""The official EdgeTAM model: its reference package, and the video predictor built from it on CPU.

EdgeTAM's code is the EdgeTAM repository's ``sam2`` package, published on PyPI as ``edgetam-dimos`` (checked
file by file against facebookresearch/EdgeTAM: docs/edgetam.md). It installs under the same import name as
SAM 2's reference ``sam2==1.1.0``, so it lives in its own virtual environment (``make edgetam-env`` makes
``.venv-edgetam``), and each model family is exported only where its own reference is importable.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
from importlib.metadata import PackageNotFoundError, version as dist_version
from typing import Any, Iterator

from sam2rt.errors import Sam2rtError

EDGETAM_ENV_HINT = (
    "EdgeTAM is exported with its official code, the `edgetam-dimos` package (the EdgeTAM repository's `sam2`), "
    "which has the same import name as SAM 2's reference sam2==1.1.0 and so has its own environment: run "
    "`make edgetam-env` (it creates .venv-edgetam), then `.venv-edgetam/bin/sam2rt export --model edgetam ...`"
)


def edgetam_package_installed() -> bool:
    """Whether the importable ``sam2`` is EdgeTAM's (it alone has the spatial perceiver)."""
    try:
        return importlib.util.find_spec("sam2.modeling.perceiver") is not None
    except ModuleNotFoundError:  # no sam2 at all
        return False


def require_reference(family: str) -> None:
    """Raise a Sam2rtError saying which environment to use unless ``family``'s reference package is the one
    installed (EdgeTAM: edgetam-dimos; SAM 2: sam2==1.1.0)."""
    if importlib.util.find_spec("sam2") is None:
        if family == "edgetam":
            raise Sam2rtError(f"the EdgeTAM package is not installed. {EDGETAM_ENV_HINT}")
        return  # SAM 2's own missing-package message comes from the import
    edgetam = edgetam_package_installed()
    if family == "edgetam" and not edgetam:
        raise Sam2rtError(f"this environment's `sam2` is SAM 2's, not EdgeTAM's. {EDGETAM_ENV_HINT}")
    if family != "edgetam" and edgetam:
        raise Sam2rtError("this environment's `sam2` is EdgeTAM's (edgetam-dimos), whose SAM 2 code predates the "
                          "reference sam2==1.1.0: export SAM 2 models from the main environment (`make install`, "
                          ".venv/bin/sam2rt export ...)")


def reference_version(family: str) -> str:
    """The reference package's version, for the manifest."""
    name = "edgetam-dimos" if family == "edgetam" else "sam2"
    try:
        return dist_version(name)
    except PackageNotFoundError:
        return "unknown"


def check_edgetam_image_size(image_size: int) -> None:
    """The 2-D perceiver pools the stride-16 map into a 16 x 16 latent grid: h = S / 16 must be a multiple of 16."""
    if image_size % 256:
        raise Sam2rtError(f"image size {image_size} is not supported by EdgeTAM: its spatial perceiver pools the "
                          "stride-16 feature map into 16 x 16 windows, so the size must be a multiple of 256 "
                          "(256, 512, 768 or 1024, the trained size)")


def _import_torchvision() -> None:
    """Import torchvision (timm needs it for RepViT) over the CPU torch build.

    torchvision's PyPI wheel is built against CUDA torch: over the CPU build its C operators cannot load, which
    torchvision tolerates except when it registers fake kernels for ``nms``/``qnms`` (0.28), so its import
    fails. Declaring those two schemas (no kernels: nothing here calls them) lets the pure-Python parts that
    timm uses import. A torchvision whose operators load is imported as it is.
    """
    import torch

    try:
        import torchvision  # noqa: F401
        return
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]  # the half-imported package
    lib = torch.library.Library("torchvision", "FRAGMENT")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBS.append(lib)  # a Library removes its definitions when it is collected
    import torchvision  # noqa: F401,F811


_LIBS: list[Any] = []


@contextlib.contextmanager
def _no_imagenet_download() -> Iterator[None]:
    """The official TimmBackbone asks timm for ImageNet RepViT weights (a Hugging Face download) when it is
    built; the EdgeTAM checkpoint or the seeded random weights replace every one of them, so build it with
    ``pretrained=False`` (same architecture, no network)."""
    import sam2.modeling.backbones.timm as timm_backbone

    create_model = timm_backbone.create_model
    timm_backbone.create_model = lambda *args, **kwargs: create_model(*args, **{**kwargs, "pretrained": False})
    try:
        yield
    finally:
        timm_backbone.create_model = create_model


def instantiate_edgetam(config: str, image_size: int) -> Any:
    """The official EdgeTAM ``SAM2VideoPredictor`` at ``image_size`` on CPU (the global RNG's current state)."""
    require_reference("edgetam")
    check_edgetam_image_size(image_size)
    _import_torchvision()
    from sam2.build_sam import build_sam2_video_predictor

    feat = image_size // 16
    overrides = [
        f"++model.image_size={image_size}",
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{feat},{feat}]",
        f"++model.memory_attention.layer.cross_attention.q_sizes=[{feat},{feat}]",
    ]
    with _no_imagenet_download(), contextlib.redirect_stdout(io.StringIO()):  # it prints each build step
        return build_sam2_video_predictor(config, None, device="cpu", hydra_overrides_extra=overrides)
