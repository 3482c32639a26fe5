"""The official PyTorch model, built from an official SAM 2 checkpoint or with seeded random weights.

(``sam2rt.export.download`` fetches the checkpoints.) ``build_model`` builds the official ``SAM2VideoPredictor`` on CPU at any valid image size,
either from a checkpoint in the official ``{"model": state_dict}`` format or with
deterministic seeded random weights (for offline tests), and says where its weights came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


from sam2rt.contract import check_image_size
from sam2rt.errors import Sam2rtError
from sam2rt.manifest import sha256_file
from sam2rt.models import model_info

_ABSOLUTE_STD = 0.02  # noise for norm weights/biases and constant tensors
_RELATIVE_STD = 0.1  # noise for other tensors, relative to their std
_LISTED = 10


@dataclass(frozen=True)
class ModelSource:
    """Provenance of a built model: which model, at which size, with which weights."""

    name: str
    version: str
    config: str
    image_size: int
    checkpoint_sha256: str | None
    random_seed: int | None


# --------------------------------------------------------------------------- build


def _validate_choice(checkpoint: Path | None, random_seed: int | None) -> None:
    if (checkpoint is None) == (random_seed is None):
        raise Sam2rtError("give exactly one weight source: a checkpoint (`--checkpoint PATH`) "
                          "or seeded random weights (`--random-weights --seed N`)")
    if random_seed is not None and (type(random_seed) is not int or random_seed < 0):
        raise Sam2rtError(f"invalid seed {random_seed!r}: use a non-negative integer, e.g. `--seed 0`")


def _instantiate(config: str, image_size: int) -> Any:
    """The official video predictor at ``image_size``, with the global RNG's current state."""
    from sam2.build_sam import build_sam2_video_predictor

    feat = image_size // 16
    overrides = [
        f"++model.image_size={image_size}",
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{feat},{feat}]",
        f"++model.memory_attention.layer.cross_attention.feat_sizes=[{feat},{feat}]",
    ]
    return build_sam2_video_predictor(config, None, device="cpu", hydra_overrides_extra=overrides)


def build_model(
    name: str,
    image_size: int = 1024,
    checkpoint: Path | None = None,
    random_seed: int | None = None,
) -> tuple[Any, ModelSource]:
    """Build the official ``SAM2VideoPredictor`` on CPU in eval mode, plus its provenance.

    Exactly one of ``checkpoint`` (official ``{"model": state_dict}`` file, strictly checked)
    and ``random_seed`` (deterministic random weights) must be given.
    """
    import torch

    info = model_info(name)
    check_image_size(image_size)
    _validate_choice(checkpoint, random_seed)
    state_dict = _read_checkpoint(Path(checkpoint), name) if checkpoint is not None else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_seed or 0)
        model = _instantiate(info.config, image_size)
    if state_dict is not None:
        _check_keys(model, state_dict, name)
        model.load_state_dict(state_dict, strict=True)
        digest = sha256_file(Path(checkpoint))
    else:
        _randomize(model, random_seed)
        digest = None
    model = model.to("cpu").eval()
    source = ModelSource(info.name, info.version, info.config, image_size, digest, random_seed)
    return model, source


def _read_checkpoint(path: Path, name: str) -> dict[str, Any]:
    """Load an official checkpoint file and return its state dict."""
    import torch

    if not path.is_file():
        raise Sam2rtError(f"checkpoint {path} not found; run `sam2rt download {name}` or pass an existing file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated / foreign / corrupt files
        from sam2rt.models import default_cache_dir

        cached = default_cache_dir().resolve() in path.resolve().parents  # ours to delete, or the user's file
        fix = (f"delete it and run `sam2rt download {name}` again" if cached else
               f"pass the official .pt file (`sam2rt download {name}` fetches it)")
        raise Sam2rtError(
            f"cannot read checkpoint {path} ({type(exc).__name__}): the file is corrupt or not a "
            f"PyTorch checkpoint; {fix}"
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise Sam2rtError(
            f"checkpoint {path} is not in the official SAM 2 format {{'model': state_dict}}; "
            "use Meta's released .pt file, or wrap a bare state dict with "
            "`torch.save({'model': state_dict}, path)`"
        )
    return data["model"]


def _check_keys(model: Any, state_dict: dict[str, Any], name: str) -> None:
    """Raise if the state dict's keys or shapes differ from the model's."""
    import torch

    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(map(str, set(state_dict) - set(expected)))
    mismatched = sorted(
        f"{key}: {tuple(getattr(state_dict[key], 'shape', ())) or type(state_dict[key]).__name__}"
        f" vs {tuple(expected[key].shape)}"
        for key in set(expected) & set(state_dict)
        if not isinstance(state_dict[key], torch.Tensor) or state_dict[key].shape != expected[key].shape
    )
    if not (missing or unexpected or mismatched):
        return
    parts = [f"{label} ({len(items)}): {', '.join(items[:_LISTED])}{' ...' if len(items) > _LISTED else ''}"
             for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                  ("shape mismatches (file vs model)", mismatched)) if items]
    raise Sam2rtError(
        f"the checkpoint does not belong to model {name}: " + "; ".join(parts)
        + f". Pass the checkpoint of {name} (`sam2rt download {name}`) or pick the matching model name"
    )


def write_official_checkpoint(model: Any, path: Path) -> Path:
    """Save ``{"model": model.state_dict()}``, the official checkpoint format."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict()}, path)
    return path


# --------------------------------------------------------------------------- random weights

# Float buffers that are fixed positional tables, not learned weights: left as initialised.
_POSITIONAL_MARKERS = ("positional", "pos_enc", "freqs")


def _randomize(model: Any, seed: int) -> None:
    """Perturb every learned tensor with seeded noise, so no weight is zero or a clone.

    Norm weights/biases and constant tensors (zeros, ones, layer scales) get ``0.02 * randn``
    (norm weights thus stay near 1); other tensors get ``0.1 * std * randn``.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    norms = {f"{mod_name}.{p_name}".lstrip(".") for mod_name, module in model.named_modules()
             if "Norm" in type(module).__name__ for p_name, _ in module.named_parameters(recurse=False)}
    with torch.no_grad():
        for name, tensor in _learned_tensors(model):
            tensor.add_(torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype)
                        * _noise_std(tensor, name in norms))
    _assert_distinct(model)


def _learned_tensors(model: Any) -> list[tuple[str, Any]]:
    """Parameters plus floating buffers that are not positional tables."""
    buffers = [(name, b) for name, b in model.named_buffers() if b.is_floating_point()
               and not any(marker in name for marker in _POSITIONAL_MARKERS)]
    return list(model.named_parameters()) + buffers


def _noise_std(tensor: Any, is_norm: bool) -> float:
    std = float(tensor.std()) if tensor.numel() > 1 and not is_norm else 0.0
    return _RELATIVE_STD * std if std > 0 else _ABSOLUTE_STD


def _assert_distinct(model: Any) -> None:
    """Internal invariant: no all-zero parameter, no two equal-shaped identical parameters."""
    import torch

    seen: dict[tuple[Any, ...], list[tuple[str, Any]]] = {}
    for name, param in ((n, p.detach()) for n, p in model.named_parameters()):
        if not bool(param.any()):
            raise AssertionError(f"random weights left parameter {name} all zero")
        bucket = seen.setdefault((tuple(param.shape), float(param.sum())), [])
        twin = next((other for other, p in bucket if torch.equal(p, param)), None)
        if twin is not None:
            raise AssertionError(f"random weights left {name} identical to {twin}")
        bucket.append((name, param))
