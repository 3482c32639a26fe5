"""A precision variant of an exported model directory: new graphs, the same contract, manifest and constants.

FP16 conversion and INT8 quantization both turn the FP32 graphs of ``sam2rt export`` into new ONNX files
with the same inputs and outputs (FP32 at the boundary), so every runner and the whole runtime take them
unchanged. This module checks the source directory and writes the result atomically: a temporary
directory beside ``out``, moved in only when every graph was written and checked.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import onnx

from sam2rt import __version__, contract as C
from sam2rt.errors import Sam2rtError
from sam2rt.integrity import check_model
from sam2rt.manifest_schema import PRECISIONS
from sam2rt.manifest import Manifest, load_manifest, make_output_dir, sha256_file, write_manifest
from sam2rt.outputs import check_writable_dir



def check_precision(precision: str) -> str:
    """Raise unless ``precision`` is one sam2rt makes."""
    if precision not in PRECISIONS:
        raise Sam2rtError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision


def load_fp32_source(model_dir: str | Path, purpose: str) -> Manifest:
    """The FP32 export that a conversion starts from; other precisions are refused (no double conversion)."""
    manifest = load_manifest(model_dir)
    check_model(manifest)  # stale or mixed graphs must not be converted into a new model
    if manifest.precision != "fp32":
        raise Sam2rtError(
            f"{manifest.directory} holds {manifest.precision} graphs; {purpose} starts from the FP32 export "
            f"(the directory written by `sam2rt export`), not from a converted one"
        )
    return manifest


def check_out_dir(source: Manifest, out: str | Path) -> Path:
    """``out`` must be writable and must not be the source directory; nothing is created yet, so a request
    refused later (an unknown graph name, a failed conversion) leaves no empty folder behind."""
    out = Path(out)
    if out.resolve() == source.directory.resolve():
        raise Sam2rtError(f"--out {out} is the source model directory; choose a new directory for the variant")
    check_writable_dir(out, "--out")
    return out


def write_variant(source: Manifest, out: str | Path, precision: str, graphs: Mapping[str, onnx.ModelProto],
                  details: Mapping[str, Any]) -> Path:
    """Write ``graphs`` (every graph of the contract) with the source's constants and an updated manifest.

    Args:
        source: the FP32 model directory's manifest.
        out: output directory (created; files already there with the same names are replaced).
        precision: "fp16", "int8" or "int8-cpu", recorded in the manifest.
        graphs: {graph name: ONNX model} for all four graphs; each is checked with the ONNX checker.
        details: per-graph and tool settings recorded under ``manifest["conversion"]``.

    Returns:
        the new manifest's path.
    """
    check_precision(precision)
    missing = [s.name for s in C.GRAPHS if s.name not in graphs]
    assert not missing, f"write_variant needs every graph, missing {missing}"
    out = check_out_dir(source, out)
    make_output_dir(out)
    raw = json.loads(json.dumps(source.raw))  # deep copy
    with tempfile.TemporaryDirectory(dir=out, prefix=f".{precision}-") as tmp:
        tmp = Path(tmp)
        for spec in C.GRAPHS:
            path = tmp / spec.filename
            onnx.save(graphs[spec.name], str(path))
            onnx.checker.check_model(str(path))
            raw["graphs"][spec.name]["sha256"] = sha256_file(path)
        shutil.copy2(source.constants_path, tmp / C.CONSTANTS_NAME)
        raw["precision"] = precision
        raw["conversion"] = {"from": str(source.directory), "from_precision": source.precision,
                             "sam2rt": __version__, "onnx": onnx.__version__, **details}
        write_manifest(tmp / C.MANIFEST_NAME, raw)
        for f in [*(tmp / s.filename for s in C.GRAPHS), tmp / C.CONSTANTS_NAME, tmp / C.MANIFEST_NAME]:
            shutil.move(str(f), out / f.name)  # same filesystem: a rename; the manifest last
    return out / C.MANIFEST_NAME

