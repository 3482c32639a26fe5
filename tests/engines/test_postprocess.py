"""The GPU postprocessing graph, run on ONNX Runtime CPU, against the host's ``outputs.threshold_resize``."""

from __future__ import annotations

import numpy as np
import pytest

from sam2rt import contract as C
from sam2rt.engines.postprocess import bilinear_matrix, postprocess_model, postprocess_onnx_bytes, resize_matrices
from sam2rt.runtime.outputs import threshold_resize

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
LOW = 64  # h4 at 256 px


@pytest.fixture(scope="module")
def session() -> "ort.InferenceSession":
    return ort.InferenceSession(postprocess_onnx_bytes(256), providers=["CPUExecutionProvider"])


def _logits(K: int, seed: int) -> np.ndarray:
    """(K, 1, 64, 64) float32: smooth blobs (mask-like boundaries), noise, an absent object, exact zeros."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:LOW, :LOW].astype(np.float32)
    out = np.empty((K, 1, LOW, LOW), np.float32)
    for k in range(K):
        cy, cx, r = rng.uniform(10, 54, 3)
        out[k, 0] = (r / 2 - np.hypot(yy - cy, xx - cx)) * rng.uniform(0.5, 4)
        if k == 1:
            out[k, 0] = rng.standard_normal((LOW, LOW)).astype(np.float32) * 8
        if k == 2:
            out[k, 0] = C.NO_OBJ_SCORE
        if k == 3:
            out[k, 0, ::3] = 0.0
    return out


@pytest.mark.parametrize("size", [(720, 1280), (1080, 1920), (256, 256), (64, 64), (50, 30), (33, 200), (1, 7)])
@pytest.mark.parametrize("K", [1, 2, 3, 4])
def test_graph_equals_threshold_resize(session, size: tuple[int, int], K: int) -> None:
    """The host's masks, up- and downscaling, 1..4 objects: exactly on mask-like logits; on the noise plane
    (object 1) a pixel may differ only where the interpolated logit is within float32 rounding of 0 (the
    GEMM may fuse a multiply and an add; measured: 1 pixel of 4.1 M at 1080x1920, exact value 1e-7)."""
    low = _logits(K, seed=K * 100 + size[0])
    feeds = resize_matrices(LOW, *size)
    out = session.run(None, {"low_res_masks": low, **feeds})[0]
    assert out.dtype == np.bool_ and out.shape == (K, *size)
    ref = threshold_resize(low, size)
    smooth = [k for k in range(K) if k != 1]
    np.testing.assert_array_equal(out[smooth], ref[smooth])
    for k, y, x in np.argwhere(out != ref):
        rows, cols = feeds["resize_rows"][y].astype(np.float64), feeds["resize_cols"][:, x].astype(np.float64)
        exact = rows @ low[k, 0].astype(np.float64) @ cols
        assert k == 1 and abs(exact) < 1e-5, (k, y, x, exact)


def test_graph_matches_the_contract_and_passes_the_lint() -> None:
    from sam2rt.engines.lint import lint_model

    model = postprocess_model(512)
    assert [i.name for i in model.graph.input] == C.POSTPROCESS.input_names
    assert [o.name for o in model.graph.output] == C.POSTPROCESS.output_names
    assert {n.op_type for n in model.graph.node} == {"MatMul", "Squeeze", "Greater"}
    assert lint_model(model) == []


@pytest.mark.parametrize("n_in, n_out", [(64, 720), (64, 30), (256, 256), (256, 1), (128, 4096)])
def test_bilinear_matrix_has_two_taps_summing_to_one(n_in: int, n_out: int) -> None:
    m = bilinear_matrix(n_in, n_out)
    assert m.shape == (n_out, n_in) and m.dtype == np.float32 and not m.flags.writeable
    assert ((m != 0).sum(axis=1) <= 2).all()
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-6)
    feeds = resize_matrices(n_in, n_out, 9)
    assert feeds["resize_rows"].shape == (n_out, n_in) and feeds["resize_cols"].shape == (n_in, 9)
