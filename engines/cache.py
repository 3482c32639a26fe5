"""The engine manifest (engines.json) beside the engines: what they were built for, and refusal to load them
anywhere else.

A TensorRT engine is only valid on the GPU model (compute capability) and TensorRT version it was built
with, for the exact ONNX graph it came from. Each engine's entry records those, the precision, the
optimization profiles and the build config; its cache key hashes them, so a rebuild skips graphs whose key
and file are unchanged. Loading checks every field and refuses with the exact ``sam2rt build`` command.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from sam2rt.engines.config import BuildConfig
from sam2rt.errors import Sam2rtError
from sam2rt.manifest import sha256_file

ENGINE_MANIFEST = "engines.json"
ENGINE_FORMAT = 1
DEFAULT_ENGINE_DIR = "engines"  # inside the model directory, where `sam2rt build` writes by default


@dataclass(frozen=True)
class DeviceInfo:
    """What an engine is specific to: GPU name, compute capability ("8.9") and TensorRT version."""

    gpu: str
    compute_capability: str
    tensorrt: str

    def to_json(self) -> dict[str, str]:
        return {"gpu": self.gpu, "compute_capability": self.compute_capability, "tensorrt": self.tensorrt}


def default_engine_dir(model_dir: str | Path) -> Path:
    """Where ``sam2rt build MODEL_DIR`` writes and ``--backend trt`` reads when no directory is given."""
    return Path(model_dir) / DEFAULT_ENGINE_DIR


def rebuild_command(model_dir: str | Path, engine_dir: str | Path, cfg: BuildConfig | None = None) -> str:
    """The exact command that (re)builds these engines."""
    cfg = cfg or BuildConfig()
    return (f"sam2rt build {model_dir} --out {engine_dir} --max-objects {cfg.max_objects} "
            f"--max-points {cfg.max_points} --workspace {cfg.workspace_gib:g}")


def cache_key(device: DeviceInfo, onnx_sha256: str, precision: str, profiles: Mapping[str, Any],
              cfg: BuildConfig) -> str:
    """Hex key of everything an engine depends on: device, TensorRT, graph hash, precision, profiles, config.

    The timing cache path is left out (it changes build time, not the engine's behaviour).
    """
    config = {k: v for k, v in cfg.to_json().items() if k != "timing_cache"}
    blob = json.dumps({"device": device.to_json(), "onnx_sha256": onnx_sha256, "precision": precision,
                       "profiles": profiles, "config": config}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def engine_entry(graph: str, onnx_path: Path, engine_file: str, engine_bytes: bytes, device: DeviceInfo,
                 precision: str, profiles: Mapping[str, Any], cfg: BuildConfig) -> dict[str, Any]:
    """One graph's record in engines.json (``profiles`` as {input: {"min", "opt", "max"}})."""
    onnx_sha = sha256_file(onnx_path)
    return {"file": engine_file, "onnx": str(onnx_path), "onnx_sha256": onnx_sha,
            "engine_sha256": hashlib.sha256(engine_bytes).hexdigest(), "precision": precision,
            "profiles": dict(profiles), "key": cache_key(device, onnx_sha, precision, profiles, cfg)}


def engine_manifest(model_dir: Path, device: DeviceInfo, cfg: BuildConfig, image_size: int,
                    entries: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The whole engines.json: format, model, device, build config, one entry per graph."""
    return {"format": ENGINE_FORMAT, "model_dir": str(Path(model_dir).resolve()), "image_size": image_size,
            "device": device.to_json(), "build": cfg.to_json(), "engines": dict(entries)}


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_engine_manifest(engine_dir: Path, manifest: Mapping[str, Any]) -> Path:
    path = Path(engine_dir) / ENGINE_MANIFEST
    write_atomic(path, (json.dumps(manifest, indent=2) + "\n").encode())
    return path


def load_engine_manifest(engine_dir: str | Path, model_dir: str | Path) -> dict[str, Any]:
    """Read engines.json; a missing or unreadable one is a Sam2rtError naming the build command."""
    engine_dir = Path(engine_dir)
    path = engine_dir / ENGINE_MANIFEST
    build = rebuild_command(model_dir, engine_dir)
    if not path.is_file():
        raise Sam2rtError(f"no TensorRT engines in {engine_dir} ({ENGINE_MANIFEST} is missing); build them "
                          f"first: {build}")
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise Sam2rtError(f"{path} is not valid JSON ({e}); rebuild the engines: {build}") from None
    missing = [k for k in ("format", "device", "build", "engines") if k not in raw]
    if missing or raw.get("format") != ENGINE_FORMAT:
        raise Sam2rtError(f"{path} was not written by this sam2rt (format {raw.get('format')!r}, missing "
                          f"{missing}); rebuild the engines: {build}")
    return raw


def stored_config(raw: Mapping[str, Any]) -> BuildConfig:
    """The BuildConfig recorded in engines.json (for the rebuild command and the runtime's limits)."""
    fields = dict(raw["build"])
    fields["timing_cache"] = Path(fields["timing_cache"]) if fields.get("timing_cache") else None
    known = BuildConfig.__dataclass_fields__
    return BuildConfig(**{k: v for k, v in fields.items() if k in known})


def check_engine_manifest(raw: Mapping[str, Any], device: DeviceInfo, model_dir: str | Path,
                          engine_dir: str | Path, graphs: Mapping[str, Path], precision: str) -> None:
    """Refuse engines built for another GPU, TensorRT version, graph or precision.

    graphs: {graph name: the ONNX file the model directory holds now}. Raises a Sam2rtError that says what
    differs and gives the rebuild command; returns None when every engine may be loaded.
    """
    cfg = stored_config(raw)
    build = rebuild_command(model_dir, engine_dir, cfg)
    built = raw["device"]
    if built.get("compute_capability") != device.compute_capability or built.get("gpu") != device.gpu:
        raise Sam2rtError(f"the engines in {engine_dir} were built for {built.get('gpu')} (compute capability "
                          f"{built.get('compute_capability')}), this GPU is {device.gpu} (compute capability "
                          f"{device.compute_capability}); TensorRT engines are specific to the GPU model: rebuild "
                          f"them here: {build}")
    if built.get("tensorrt") != device.tensorrt:
        raise Sam2rtError(f"the engines in {engine_dir} were built with TensorRT {built.get('tensorrt')}, this is "
                          f"TensorRT {device.tensorrt}; engines are specific to the TensorRT version: rebuild them: "
                          f"{build}")
    for name, onnx_path in graphs.items():
        entry = raw["engines"].get(name)
        if entry is None:
            raise Sam2rtError(f"{engine_dir} has no engine for the {name} graph; rebuild them: {build}")
        if entry.get("precision") != precision:
            raise Sam2rtError(f"the {name} engine was built from a {entry.get('precision')} graph but the model in "
                              f"{model_dir} is {precision}; rebuild the engines: {build}")
        if entry.get("onnx_sha256") != sha256_file(onnx_path):
            raise Sam2rtError(f"the {name} engine was built from another {onnx_path.name} (its SHA-256 differs: "
                              f"the model was re-exported or converted since); rebuild the engines: {build}")


def read_engine(engine_dir: str | Path, entry: Mapping[str, Any], model_dir: str | Path,
                cfg: BuildConfig | None = None) -> bytes:
    """An engine file's bytes, checked against its recorded SHA-256 (a truncated or corrupt file is refused)."""
    path = Path(engine_dir) / entry["file"]
    build = rebuild_command(model_dir, engine_dir, cfg)
    if not path.is_file():
        raise Sam2rtError(f"{path} is missing; rebuild the engines: {build}")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != entry.get("engine_sha256"):
        raise Sam2rtError(f"{path} is corrupt or was changed after the build (its SHA-256 does not match "
                          f"{ENGINE_MANIFEST}); rebuild the engines: {build}")
    return data
