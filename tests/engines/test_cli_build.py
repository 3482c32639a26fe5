"""``sam2rt build`` where TensorRT is missing: exit code 2 and the install command."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_build_without_tensorrt_exits_2_naming_the_install(model: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "sam2rt", "build", str(model), "--out", str(tmp_path / "e")],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert 'pip install "sam2rt[trt-cu12]"' in done.stderr and '"sam2rt[jetson]"' in done.stderr
    assert not (tmp_path / "e").exists()


def test_trt_backend_without_engines_names_the_build_command(model: Path) -> None:
    from sam2rt.engines.cache import load_engine_manifest
    from sam2rt.errors import Sam2rtError

    with pytest.raises(Sam2rtError, match=f"sam2rt build {model} --out {model / 'engines'}"):
        load_engine_manifest(model / "engines", model)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_trt_backend_without_tensorrt_names_the_install(model: Path) -> None:
    from sam2rt.errors import Sam2rtError
    from sam2rt.runtime.backends import load_runners

    with pytest.raises(Sam2rtError, match=r'pip install "sam2rt\[trt-cu12\]"'):
        load_runners(model, backend="trt")
