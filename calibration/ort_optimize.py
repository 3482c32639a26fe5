"""Graph rewrites for ONNX Runtime's CPU kernels, applied to the int8-cpu variant (``calibration.int8_cpu``).

Attention products (activation x activation MatMuls: Q·Kᵀ, softmax·V) are dynamically quantized per call.
``onnxruntime.quantization.quantize_dynamic`` quantizes *both* operands with ``DynamicQuantizeLinear``,
which is uint8 only, so ONNX Runtime runs them on MLAS's u8·u8 GEMM. On x86 MLAS has VNNI kernels
(``vpdpbusd``: unsigned x signed bytes) for u8·s8 only; u8·u8 takes the 16-bit ``vpmaddwd`` path at half
the rate or less (measured: a (1024x256)·(256x10316) product, 2 objects, 69 ms CPU time u8·u8 vs 30 ms
u8·s8 on an AVX-512 VNNI EPYC; see docs/precision-cpu.md). :func:`quantize_activation_matmuls` keeps the
left operand uint8 (``DynamicQuantizeLinear``, asymmetric: softmax outputs are all >= 0) and quantizes the
right operand to int8, symmetric, per tensor, scale from its own max |value| per call; the product is
``MatMulIntegerToFloat`` (one kernel: integer GEMM, then both scales).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

MS_DOMAIN = "com.microsoft"
INT8_MAX = 127.0


def activation_matmuls(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """MatMul nodes whose right operand is not a weight (an initializer): the attention products."""
    weights = {i.name for i in model.graph.initializer}
    constants = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] not in weights | constants]


def _ensure_ms_opset(model: onnx.ModelProto) -> None:
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))


def quantize_activation_matmuls(model: onnx.ModelProto, exclude: tuple[str, ...] = ()) -> list[str]:
    """Rewrite every activation MatMul ``Y = A·B`` (except ``exclude``) into u8·s8 dynamic quantization:

    ``a_q, a_s, a_zp = DynamicQuantizeLinear(A)``;
    ``b_s = max(max(B), -min(B), tiny) / 127``; ``b_q = QuantizeLinear(B, b_s, int8 0)``;
    ``Y = MatMulIntegerToFloat(a_q, b_q, a_s, b_s, a_zp)``  (com.microsoft).

    Shapes are unchanged (batched MatMul broadcasting as before). Returns the rewritten node names.
    """
    _ensure_ms_opset(model)
    tiny = "sam2rt_int8_tiny"
    model.graph.initializer.extend([numpy_helper.from_array(np.array(1e-12, np.float32), tiny),
                                    numpy_helper.from_array(np.array(INT8_MAX, np.float32), "sam2rt_int8_max"),
                                    numpy_helper.from_array(np.array(0, np.int8), "sam2rt_int8_zero")])
    rewritten: list[str] = []
    nodes: list[onnx.NodeProto] = []
    targets = {n.output[0] for n in activation_matmuls(model) if n.name not in exclude}
    transposes = _sole_transposes(model, targets)
    moved = {id(t) for t in transposes.values()}
    for node in model.graph.node:
        if id(node) in moved:
            continue  # moved after the quantization of its MatMul's right operand (below)
        if node.op_type != "MatMul" or node.output[0] not in targets:
            nodes.append(node)
            continue
        a, b = node.input
        p = f"{node.name or node.output[0]}_u8s8"
        transpose = transposes.get(node.output[0])
        b_float = transpose.input[0] if transpose is not None else b  # quantize, then transpose 1-byte values
        b_q = f"{p}_b_q_untransposed" if transpose is not None else f"{p}_b_q"
        nodes += [
            helper.make_node("DynamicQuantizeLinear", [a], [f"{p}_a_q", f"{p}_a_s", f"{p}_a_zp"], name=f"{p}_quant_a"),
            helper.make_node("ReduceMax", [b_float], [f"{p}_b_max"], name=f"{p}_b_max", keepdims=0),
            helper.make_node("ReduceMin", [b_float], [f"{p}_b_min"], name=f"{p}_b_min", keepdims=0),
            helper.make_node("Neg", [f"{p}_b_min"], [f"{p}_b_negmin"], name=f"{p}_b_negmin"),
            helper.make_node("Max", [f"{p}_b_max", f"{p}_b_negmin", tiny], [f"{p}_b_absmax"], name=f"{p}_b_absmax"),
            helper.make_node("Div", [f"{p}_b_absmax", "sam2rt_int8_max"], [f"{p}_b_s"], name=f"{p}_b_scale"),
            helper.make_node("QuantizeLinear", [b_float, f"{p}_b_s", "sam2rt_int8_zero"], [b_q], name=f"{p}_quant_b"),
        ]
        if transpose is not None:
            nodes.append(helper.make_node("Transpose", [b_q], [f"{p}_b_q"], name=f"{p}_transpose_b",
                                          perm=list(helper.get_attribute_value(transpose.attribute[0]))))
        nodes.append(helper.make_node("MatMulIntegerToFloat", [f"{p}_a_q", f"{p}_b_q", f"{p}_a_s", f"{p}_b_s",
                                                               f"{p}_a_zp"], list(node.output), name=f"{p}_matmul",
                                      domain=MS_DOMAIN))
        rewritten.append(node.name)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return rewritten


def _sole_transposes(model: onnx.ModelProto, targets: set[str]) -> dict[str, onnx.NodeProto]:
    """For each target MatMul (by output) whose right operand is a Transpose's output used by nothing else:
    that Transpose. Quantizing first and transposing the int8 result moves a quarter of the bytes (the range
    and the rounding do not depend on the element order, so the values are the same)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    uses: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    outputs = {o.name for o in model.graph.output}
    found = {}
    for n in model.graph.node:
        if n.op_type == "MatMul" and n.output[0] in targets:
            t = producers.get(n.input[1])
            if (t is not None and t.op_type == "Transpose" and len(t.attribute) == 1 and uses.get(t.output[0]) == 1
                    and t.output[0] not in outputs):
                found[n.output[0]] = t
    return found
