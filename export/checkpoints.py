"""Official SAM 2 checkpoints: download them, and build the official PyTorch model from one.

``download`` fetches Meta's checkpoint into a cache (atomic, resumable, stdlib only).
``build_model`` builds the official ``SAM2VideoPredictor`` on CPU at any valid image size,
either from a checkpoint in the official ``{"model": state_dict}`` format or with
deterministic seeded random weights (for offline tests), and says where its weights came from.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from sam2rt.contract import check_image_size
from sam2rt.errors import Sam2rtError
from sam2rt.manifest import sha256_file
from sam2rt.models import default_cache_dir, model_info
from sam2rt.outputs import check_writable_dir

_CHUNK = 1 << 20
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


# --------------------------------------------------------------------------- download


def _network_error(url: str, detail: str) -> Sam2rtError:
    return Sam2rtError(
        f"cannot download {url} ({detail}): the network is unreachable or the server refused. "
        "Download the file on a machine with network access and pass `--checkpoint PATH`, "
        "or build a model with seeded random weights: `--random-weights --seed N`."
    )


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    """Open ``url``, asking for the bytes from ``offset`` on when resuming."""
    request = urllib.request.Request(url, headers={"User-Agent": "sam2rt"})
    if offset > 0:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset > 0:
            raise  # the partial file is stale: the caller restarts from zero
        raise _network_error(url, f"HTTP {exc.code} {exc.reason}") from exc
    except OSError as exc:  # URLError, refused, DNS failure, timeout
        raise _network_error(url, str(getattr(exc, "reason", exc))) from exc


def _resume_offset(response: http.client.HTTPResponse, offset: int) -> int:
    """Where the body starts: ``offset`` on a matching 206, 0 when the server sends it all."""
    if response.status != 206:
        return 0
    content_range = response.headers.get("Content-Range", "")
    start = content_range.removeprefix("bytes ").split("-", 1)[0]
    return offset if start.strip() == str(offset) else -1


def _expected_total(response: http.client.HTTPResponse, start: int) -> int | None:
    """The full file size the server announced, if any."""
    total = response.headers.get("Content-Range", "").rpartition("/")[2]
    if total.isdigit():
        return int(total)
    length = response.headers.get("Content-Length")
    return start + int(length) if length and length.isdigit() else None


def _stream(response: http.client.HTTPResponse, part: Path, start: int, bar: tqdm) -> int:
    """Append (or write from zero) the body to ``part``; fsync; return the bytes on disk."""
    with open(part, "ab" if start else "wb") as f:
        try:
            for block in iter(lambda: response.read(_CHUNK), b""):
                f.write(block)
                bar.update(len(block))
        finally:
            f.flush()
            os.fsync(f.fileno())
    return part.stat().st_size


def _fetch(url: str, part: Path, name: str, progress: bool, timeout: float) -> None:
    """Download ``url`` into ``part`` (resuming it when possible) and check its size."""
    for _attempt in range(2):
        offset = part.stat().st_size if part.exists() else 0
        try:
            response = _open(url, offset, timeout)
        except urllib.error.HTTPError:  # 416: our partial file does not fit the server's file
            part.unlink()
            continue
        with response:
            start = _resume_offset(response, offset)
            if start < 0:  # a 206 for a range we did not ask for: start over
                part.unlink()
                continue
            total = _expected_total(response, start)
            with tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=name, disable=not progress) as bar:
                try:
                    size = _stream(response, part, start, bar)
                except (OSError, http.client.HTTPException) as exc:
                    raise _network_error(url, f"interrupted: {exc}; re-run to resume") from exc
        _check_size(url, part, size, total)
        return
    raise _network_error(url, "the server rejected resuming twice")


def _check_size(url: str, part: Path, size: int, total: int | None) -> None:
    if total is None or size == total:
        return
    if size > total:
        part.unlink()
        raise Sam2rtError(f"downloaded {size} bytes from {url} but expected {total}; re-run to retry")
    raise Sam2rtError(
        f"download of {url} stopped at {size} of {total} bytes; re-run the same command to "
        f"resume from {part}, or download it elsewhere and pass `--checkpoint PATH`"
    )


def download(
    name: str,
    cache_dir: Path | None = None,
    progress: bool = True,
    timeout: float = 30,
    url: str | None = None,
) -> Path:
    """Fetch model ``name``'s official checkpoint into ``cache_dir/checkpoints/NAME.pt``.

    Returns the cached file at once if it passes ``cached_checkpoint_problem``; a cached file that does not
    (empty, truncated, changed since download) is downloaded again and replaced only once the new copy is
    complete. Otherwise streams to ``NAME.pt.part`` (resuming an existing one with an HTTP Range request),
    fsyncs, checks the size against Content-Length, records size and SHA-256 in ``NAME.pt.json`` and renames
    it into place. ``url`` overrides the registry URL (tests, mirrors).
    """
    info = model_info(name)
    root = cache_dir or default_cache_dir()
    check_writable_dir(root, "--cache-dir")
    target = root / "checkpoints" / f"{name}.pt"
    problem = cached_checkpoint_problem(target) if target.is_file() else None
    if target.is_file() and problem is None:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    try:
        _fetch(url or info.url, part, name, progress, timeout)
    except Sam2rtError as e:
        if problem is None:
            raise
        raise Sam2rtError(f"the cached {target} is unusable ({problem}) and downloading it again failed: {e}") from None
    _write_record(target, part)
    os.replace(part, target)
    return target


def _record_path(target: Path) -> Path:
    return target.with_name(target.name + ".json")


def _write_record(target: Path, part: Path) -> None:
    """What was downloaded: size and SHA-256 (the stat key lets a later check skip re-hashing)."""
    record = {"size": part.stat().st_size, "sha256": sha256_file(part)}
    _record_path(target).write_text(json.dumps(record) + "\n")


def cached_checkpoint_problem(target: Path) -> str | None:
    """Why a cached checkpoint cannot be used, or None.

    A file this cache downloaded has a record (``NAME.pt.json``): its size and SHA-256 must match. A file put
    there by hand must at least be a complete zip archive (the format of ``torch.save``; its directory sits
    at the end, so a truncated file fails).
    """
    size = target.stat().st_size
    if size == 0:
        return "0 bytes"
    try:
        record = json.loads(_record_path(target).read_text())
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict):
        return None if zipfile.is_zipfile(target) else f"{size} bytes, not a complete PyTorch checkpoint"
    if record.get("size") != size:
        return f"{size} bytes, {record.get('size')} were downloaded"
    if record.get("sha256") != sha256_file(target):
        return "its SHA-256 differs from the downloaded file's"
    return None


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
        raise Sam2rtError(
            f"cannot read checkpoint {path} ({type(exc).__name__}): the file is corrupt or not a "
            f"PyTorch checkpoint; delete it and run `sam2rt download {name}` again"
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
