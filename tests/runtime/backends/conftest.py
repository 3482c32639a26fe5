"""Fixtures of the live TensorRT tests: a fake CUDA runtime installed for one test, one engine per module."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_gpu import FakeCudart, install


@pytest.fixture()
def fake_gpu(monkeypatch) -> FakeCudart:
    cudart = FakeCudart()
    install(monkeypatch, cudart)
    return cudart


@pytest.fixture(scope="module")
def engine(exported_tiny_256: Path):
    from sam2rt.runtime.engine import Engine

    return Engine(exported_tiny_256, threads=1)
