"""Fixtures of the reliability tests (issue 12): small generated frames, tamperable model copies, a folder
this process really cannot write to."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
from PIL import Image


@pytest.fixture()
def frames(tmp_path: Path) -> Path:
    """4 JPEG frames, 64x48, with a bright square (generated: no shared data needed)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        arr = rng.integers(0, 60, (48, 64, 3), dtype=np.uint8)
        arr[10 + i:30 + i, 20:40] = 230
        Image.fromarray(arr).save(folder / f"{i:05d}.jpg", quality=95)
    return folder


@pytest.fixture()
def model_copy(exported_tiny_256: Path, tmp_path: Path) -> Path:
    """The session's model folder to tamper with: manifest and constants copied, graphs symlinked (cheap)."""
    dest = tmp_path / "model_copy"
    dest.mkdir()
    for f in exported_tiny_256.iterdir():
        if f.suffix == ".onnx":
            (dest / f.name).symlink_to(f)
        else:
            shutil.copy2(f, dest / f.name)
    return dest


@pytest.fixture()
def readonly_dir(tmp_path: Path) -> Iterator[Path]:
    """An existing folder that this process cannot create files in, even as root (then: chattr +i)."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if os.access(folder, os.W_OK):  # root ignores permission bits
        done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True) if shutil.which("chattr") else None
        immutable = done is not None and done.returncode == 0
        if not immutable:
            folder.chmod(0o755)
            pytest.skip("cannot make a read-only folder here (root without chattr +i)")
    try:
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)
# Caches, not state: image features are recomputed on demand and the frame source only decodes.
SNAPSHOT_SKIP = ("features", "frames")


def freeze(value: Any) -> Any:
    """A deep, comparable copy of a predictor state: arrays by dtype, shape and bytes; dict order kept."""
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, dict):
        return ("dict", tuple((repr(k), freeze(v)) for k, v in value.items() if k not in SNAPSHOT_SKIP))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(freeze(v) for v in value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, freeze(vars(value)))
    return value


@pytest.fixture()
def snapshot() -> Callable[[Any], Any]:
    """``snapshot(state)``: compare before/after a refused call; equal means the state is unchanged."""
    return freeze


