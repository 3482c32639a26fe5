"""The GPU preprocessing graph, run on ONNX Runtime CPU, against the official (Pillow) preprocessing."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from sam2rt.engines.preprocess import pillow_resize_matrix, preprocess_onnx_bytes, resize_inputs
from sam2rt.runtime.imageops import IMAGENET_STD, preprocess_official

pytest.importorskip("onnx")
LEVEL = 1.0 / 255.0 / min(IMAGENET_STD)  # one uint8 level after normalisation (0.0175)


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    return ort.InferenceSession(preprocess_onnx_bytes(256), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("height, width", [(540, 960), (300, 200), (200, 300), (256, 256), (100, 80)])
def test_matches_pillow_within_one_level(session: ort.InferenceSession, height: int, width: int) -> None:
    """Measured: at most one uint8 level on at most 0.01% of values (float32 sums vs Pillow's fixed point)."""
    rng = np.random.default_rng(height * width)
    smooth = np.linspace(0, 255, height * width * 3).reshape(height, width, 3).astype(np.uint8)
    for frame in (rng.integers(0, 256, (height, width, 3), dtype=np.uint8), smooth):
        out = session.run(None, {"frame": frame, **resize_inputs(height, width, 256)})[0]
        diff = np.abs(out - preprocess_official(frame, 256))
        assert out.shape == (1, 3, 256, 256) and out.dtype == np.float32
        assert diff.max() <= LEVEL * 1.001
        assert (diff > 0).mean() < 1e-3


def test_resize_rows_sum_to_one() -> None:
    m = pillow_resize_matrix(540, 256)
    assert m.shape == (256, 540)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-5)
