"""Graph rewrites for ONNX Runtime's CPU kernels (``calibration.ort_optimize``): attention products as
uint8 x int8 dynamic quantization, checked against numpy on a toy graph."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from sam2rt.calibration.ort_optimize import activation_matmuls, quantize_activation_matmuls


def _toy(weight: np.ndarray) -> onnx.ModelProto:
    """``out = softmax(q @ k) @ v`` plus a weight MatMul ``w_out = q2 @ W`` (the right operand an initializer)."""
    f = lambda n, shape: helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)  # noqa: E731
    nodes = [helper.make_node("MatMul", ["q", "k"], ["logits"], name="qk"),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
             helper.make_node("MatMul", ["probs", "v"], ["out"], name="pv"),
             helper.make_node("MatMul", ["q2", "W"], ["w_out"], name="weight")]
    graph = helper.make_graph(nodes, "toy", [f("q", [2, 1, 16, 32]), f("k", [2, 1, 32, 40]), f("v", [2, 1, 40, 8]),
                                             f("q2", [16, 32])],
                              [f("out", [2, 1, 16, 8]), f("w_out", [16, 8]), f("logits", [2, 1, 16, 40])],
                              [numpy_helper.from_array(weight, "W")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_attention_products_become_uint8_by_int8() -> None:
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((32, 8)).astype(np.float32)
    model = _toy(weight)
    assert [n.name for n in activation_matmuls(model)] == ["qk", "pv"]  # the weight MatMul is not one
    assert quantize_activation_matmuls(model) == ["qk", "pv"]
    onnx.checker.check_model(model)
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["MatMulIntegerToFloat"] == 2 and ops["MatMul"] == 1  # the weight MatMul is left to quantize_dynamic
    # the right operand of each product is int8 (MLAS's VNNI kernels are u8 x s8), the left one uint8
    products = [n for n in model.graph.node if n.op_type == "MatMulIntegerToFloat"]
    producers = {o: n for n in model.graph.node for o in n.output}
    for p in products:
        assert producers[p.input[0]].op_type == "DynamicQuantizeLinear"  # uint8, asymmetric
        b = producers[p.input[1]]
        assert b.op_type == "QuantizeLinear" and b.input[2] == "sam2rt_int8_zero"
    zero = next(i for i in model.graph.initializer if i.name == "sam2rt_int8_zero")
    assert zero.data_type == TensorProto.INT8

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    q, k = rng.standard_normal((2, 1, 16, 32)).astype(np.float32), rng.standard_normal((2, 1, 32, 40)).astype(np.float32)
    v, q2 = rng.standard_normal((2, 1, 40, 8)).astype(np.float32), rng.standard_normal((16, 32)).astype(np.float32)
    out, w_out, logits = sess.run(None, {"q": q, "k": k, "v": v, "q2": q2})
    expected = q @ k
    probs = np.exp(expected - expected.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    rel = lambda a, b: np.linalg.norm(a - b) / np.linalg.norm(b)  # noqa: E731
    assert 1e-5 < rel(logits, expected) < 0.02  # quantized (not exact), within 8-bit error
    assert rel(out, probs @ v) < 0.03
    np.testing.assert_allclose(w_out, q2 @ weight, rtol=1e-5, atol=1e-5)  # untouched


def test_an_all_zero_operand_gives_zeros_not_nan() -> None:
    model = _toy(np.ones((32, 8), np.float32))
    quantize_activation_matmuls(model, exclude=("pv",))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    z = np.zeros
    _, _, logits = sess.run(None, {"q": np.ones((2, 1, 16, 32), np.float32), "k": z((2, 1, 32, 40), np.float32),
                                   "v": z((2, 1, 40, 8), np.float32), "q2": z((16, 32), np.float32)})
    assert np.all(logits == 0)  # max |k| = 0: the scale floor keeps it finite
    assert Counter(n.op_type for n in model.graph.node)["MatMulIntegerToFloat"] == 1  # "pv" excluded


def test_a_transposed_right_operand_is_quantized_before_its_transpose() -> None:
    """``q @ kᵀ`` with kᵀ a Transpose used only by the product: the int8 values are transposed (a quarter of the
    bytes), and the product equals quantizing the transposed floats, bit for bit."""
    f = lambda n, shape: helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)  # noqa: E731

    def graph(shared: bool) -> onnx.ModelProto:
        nodes = [helper.make_node("Transpose", ["k"], ["kt"], name="t", perm=[0, 1, 3, 2]),
                 helper.make_node("MatMul", ["q", "kt"], ["logits"], name="qk")]
        outputs = [f("logits", [2, 1, 16, 40])] + ([f("kt", [2, 1, 32, 40])] if shared else [])
        g = helper.make_graph(nodes, "t", [f("q", [2, 1, 16, 32]), f("k", [2, 1, 40, 32])], outputs)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])

    rng = np.random.default_rng(1)
    feeds = {"q": rng.standard_normal((2, 1, 16, 32)).astype(np.float32),
             "k": rng.standard_normal((2, 1, 40, 32)).astype(np.float32)}
    moved, kept = graph(False), graph(True)  # kept: kᵀ is also a graph output, so the float Transpose stays
    for m in (moved, kept):
        quantize_activation_matmuls(m)
        onnx.checker.check_model(m)
    producers = {o: n for n in moved.graph.node for o in n.output}
    product = next(n for n in moved.graph.node if n.op_type == "MatMulIntegerToFloat")
    transpose = producers[product.input[1]]
    assert transpose.op_type == "Transpose" and producers[transpose.input[0]].op_type == "QuantizeLinear"
    assert producers[transpose.input[0]].input[0] == "k" and "t" not in {n.name for n in moved.graph.node}
    kept_producers = {o: n for n in kept.graph.node for o in n.output}
    kept_product = next(n for n in kept.graph.node if n.op_type == "MatMulIntegerToFloat")
    assert kept_producers[kept_product.input[1]].op_type == "QuantizeLinear"  # of the float kᵀ
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(  # noqa: E731
        ["logits"], feeds)[0]
    np.testing.assert_array_equal(run(moved), run(kept))
