"""Fixtures of the engine tests: a stand-in model directory (TensorRT never parses it here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sam2rt import contract as C


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    """A minimal model directory: manifest, four tiny stand-in graph files and constants (never parsed here)."""
    graphs = {g.name: {"file": g.filename} for g in C.GRAPHS}
    for g in C.GRAPHS:
        (tmp_path / g.filename).write_bytes(f"onnx {g.name}".encode())
    (tmp_path / C.CONSTANTS_NAME).write_bytes(b"npz")
    manifest = {"format": C.MANIFEST_FORMAT, "model": {"name": "sam2.1_hiera_tiny", "image_size": 256},
                "graphs": graphs, "tracking": {}, "bank": {"cond_slots": 4, "max_objects": 16, "max_points": 16},
                "constants": C.CONSTANTS_NAME, "precision": "fp32"}
    (tmp_path / C.MANIFEST_NAME).write_text(json.dumps(manifest))
    return tmp_path
