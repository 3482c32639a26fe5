"""manifest.json: what a model directory holds, written by the exporter and checked by every loader."""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sam2rt import contract as C
from sam2rt.errors import Sam2rtError
from sam2rt.manifest_schema import TRACKING_KEYS, validate_runtime, validate_structure

__all__ = ["TRACKING_KEYS", "Manifest", "load_manifest", "check_runtime_fields", "sha256_file", "make_output_dir",
           "write_manifest"]


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest. ``raw`` keeps every field; the properties are what loaders use."""

    path: Path
    raw: dict[str, Any]

    @property
    def directory(self) -> Path:
        return self.path.parent

    @property
    def image_size(self) -> int:
        return int(self.raw["model"]["image_size"])

    @property
    def model_name(self) -> str:
        return str(self.raw["model"]["name"])

    @property
    def precision(self) -> str:
        return str(self.raw.get("precision", "fp32"))

    @property
    def random_weights(self) -> bool:
        """Exported with ``--random-weights`` (``source.random_seed`` set): masks mean nothing."""
        source = self.raw.get("source")
        return isinstance(source, dict) and source.get("random_seed") is not None

    @property
    def tracking(self) -> dict[str, Any]:
        return dict(self.raw["tracking"])

    @property
    def bank(self) -> C.BankConfig:
        fields = C.BankConfig.__dataclass_fields__
        return C.BankConfig(**{k: v for k, v in self.raw["bank"].items() if k in fields})

    def graph_path(self, name: str) -> Path:
        return self.directory / self.raw["graphs"][name]["file"]

    @property
    def constants_path(self) -> Path:
        return self.directory / self.raw["constants"]


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (graph and checkpoint hashes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_output_dir(out: Path) -> None:
    """Create ``out`` (a model directory to write) and prove it writable, or raise a Sam2rtError."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=out, prefix=".sam2rt-write-test-").close()
    except OSError as e:
        raise Sam2rtError(f"cannot write to output directory {out} ({e.strerror}); choose a writable --out") from None


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest`` as pretty JSON (the caller makes the write atomic)."""
    path.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")


def load_manifest(model_dir: str | Path) -> Manifest:
    """Read and check ``model_dir/manifest.json``; every problem is a Sam2rtError saying what to do.

    The structure every loader needs is validated here (see ``sam2rt.manifest_schema``), naming the bad
    field; the tracking settings only the runtime reads are checked by ``check_runtime_fields``.
    """
    model_dir = Path(model_dir)
    path = model_dir / C.MANIFEST_NAME
    hint = f"export a model first: sam2rt export --model sam2.1_hiera_tiny --out {model_dir}"
    if not path.is_file():
        raise Sam2rtError(f"{model_dir} has no {C.MANIFEST_NAME}; {hint}")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise Sam2rtError(f"{path} is not valid JSON ({type(e).__name__}: {str(e)[:200]}); {hint}") from None
    if isinstance(raw, dict) and raw.get("format", C.MANIFEST_FORMAT) != C.MANIFEST_FORMAT:
        raise Sam2rtError(f"{path} has manifest format {raw['format']!r}, this sam2rt reads {C.MANIFEST_FORMAT}; {hint}")
    validate_structure(raw, f"{path}", hint)
    manifest = Manifest(path=path, raw=raw)
    for spec in C.GRAPHS:
        if not manifest.graph_path(spec.name).is_file():
            raise Sam2rtError(f"{manifest.graph_path(spec.name)} is missing; {hint}")
    if not manifest.constants_path.is_file():
        raise Sam2rtError(f"{manifest.constants_path} is missing; {hint}")
    return manifest


def check_runtime_fields(manifest: Manifest) -> None:
    """The fields only tracking needs (every tracking setting, graph hashes), named when bad."""
    hint = f"re-export the model: sam2rt export --model {manifest.model_name} --out {manifest.directory}"
    validate_runtime(manifest.raw, str(manifest.path), hint)
