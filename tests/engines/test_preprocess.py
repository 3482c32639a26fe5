"""The GPU preprocessing graphs, run on ONNX Runtime CPU, against the official (Pillow) preprocessing."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from sam2rt import contract as C
from sam2rt.engines.lint import lint_model
from sam2rt.engines.preprocess import (max_taps, pillow_resize_matrix, pillow_resize_taps, preprocess_flops,
                                       preprocess_models, preprocess_onnx_bytes, resize_inputs)
from sam2rt.runtime.imageops import IMAGENET_STD, preprocess_official

pytest.importorskip("onnx")
LEVEL = 1.0 / 255.0 / min(IMAGENET_STD)  # one uint8 level after normalisation (0.0175)


@pytest.fixture(scope="module")
def sessions() -> dict[str, ort.InferenceSession]:
    """Both pass orders' graphs at 256 px, keyed by graph name."""
    return {spec.name: ort.InferenceSession(preprocess_onnx_bytes(256, spec is C.PREPROCESS_VERTICAL_FIRST),
                                            providers=["CPUExecutionProvider"]) for spec in C.PREPROCESS_GRAPHS}


def _run(session: ort.InferenceSession, frame: np.ndarray, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return session.run(None, {"frame": frame, **feeds})[0]


@pytest.mark.parametrize("height, width", [(540, 960), (1080, 1920), (300, 200), (200, 300), (256, 256),
                                           (100, 80)])
def test_bit_equal_to_pillow(sessions: dict, height: int, width: int) -> None:
    """Pillow's integer arithmetic on gathered taps: every value equal to the host path (Pillow), noise and ramps."""
    rng = np.random.default_rng(height * width)
    smooth = np.linspace(0, 255, height * width * 3).reshape(height, width, 3).astype(np.uint8)
    chosen = resize_inputs(height, width, 256)
    assert set(chosen.feeds) == {"rows_index", "rows_weight", "cols_index", "cols_weight"}
    for frame in (rng.integers(0, 256, (height, width, 3), dtype=np.uint8), smooth):
        out = _run(sessions[chosen.graph], frame, chosen.feeds)
        assert out.shape == (1, 3, 256, 256) and out.dtype == np.float32
        np.testing.assert_array_equal(out, preprocess_official(frame, 256))


def test_bit_equal_on_a_real_frame(sessions: dict, shared_data) -> None:
    from PIL import Image

    frame = np.array(Image.open(shared_data / "videos" / "bedroom_frames" / "00000.jpg").convert("RGB"))
    chosen = resize_inputs(*frame.shape[:2], 256)
    np.testing.assert_array_equal(_run(sessions[chosen.graph], frame, chosen.feeds), preprocess_official(frame, 256))


def test_taps_are_the_dense_weights() -> None:
    """The gathered taps hold exactly the nonzero band of the former dense matrices, and fit the profile bound."""
    for n, s in ((1080, 512), (1920, 1024), (100, 256), (4096, 512)):
        index, weight = pillow_resize_taps(n, s)
        dense = np.zeros((s, n))
        np.add.at(dense, (np.arange(s)[:, None], index), weight / 2**22)
        np.testing.assert_array_equal(dense.astype(np.float32), pillow_resize_matrix(n, s))
        assert index.min() >= 0 and index.max() < n and weight.shape[1] <= max_taps(n, s)


def test_flops_per_1080p_frame() -> None:
    """A 1080p frame goes horizontal pass first (Pillow's order for it): the dense products were
    3·H·S·W + 3·S·S·H multiply-adds (8.1 GFLOP at 512 px, 19.5 at 1024); the taps are under 1 % of that."""
    for S in (512, 1024):
        flops = preprocess_flops(1080, 1920, S)
        assert resize_inputs(1080, 1920, S).graph == C.PREPROCESS_HORIZONTAL_FIRST.name
        assert flops["dense"] == 2 * (3 * 1080 * S * 1920 + 3 * S * S * 1080)
        tr, tc = pillow_resize_taps(1080, S)[0].shape[1], pillow_resize_taps(1920, S)[0].shape[1]
        assert flops["taps"] == 2 * (3 * 1080 * S * tc + 3 * S * S * tr) and flops["taps"] < flops["dense"] / 100


@pytest.mark.parametrize("height, width", [(300, 200), (200, 300)])
def test_the_other_order_is_not_pillow(sessions: dict, height: int, width: int) -> None:
    """Why there are two graphs: the pass order Pillow did not pick is off by many levels (measured: ~30% of the
    values of a noise frame differ, by up to ~20 levels), so one fixed order cannot be Pillow-exact at every size."""
    chosen = resize_inputs(height, width, 256)
    other = next(name for name in sessions if name != chosen.graph)
    frame = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    diff = np.abs(_run(sessions[other], frame, chosen.feeds) - preprocess_official(frame, 256))
    assert (diff > 0).mean() > 0.1 and diff.max() > 5 * LEVEL


def test_graphs_have_no_if_and_pass_the_lint() -> None:
    models = preprocess_models(256)
    assert set(models) == {g.name for g in C.PREPROCESS_GRAPHS}
    for name, model in models.items():
        assert all(n.op_type != "If" for n in model.graph.node)
        assert [i.name for i in model.graph.input] == C.PREPROCESS_VERTICAL_FIRST.input_names
        assert lint_model(model, name) == []
        assert not any(n.op_type == "MatMul" for n in model.graph.node)  # integer taps: nothing for TF32 to touch


def test_resize_rows_sum_to_one() -> None:
    m = pillow_resize_matrix(540, 256)
    assert m.shape == (256, 540)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-5)
