"""The GPU check command without a GPU: a clear message and exit status 2, nothing else attempted."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_gpu_check_without_cuda_exits_clearly() -> None:
    from sam2rt.errors import Sam2rtError
    from sam2rt.runtime.backends.cuda import device_properties

    try:
        device_properties()
        pytest.skip("a CUDA GPU is present: the check would run for real")
    except Sam2rtError:
        pass
    done = subprocess.run([sys.executable, "-m", "sam2rt.benchmarks.gpu_check"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert "no usable CUDA GPU here, nothing checked" in done.stderr
    assert "cuda-python" in done.stderr or "nvidia-smi" in done.stderr  # says what is missing
