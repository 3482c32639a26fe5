"""The ``attention-form`` lint rule: hand-made attention blocks, one per deviation, and the exported graphs."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sam2rt.engines.lint import lint_model, lint_model_dir  # noqa: E402

F, H16 = TensorProto.FLOAT, TensorProto.FLOAT16


def _attention(scale_after: bool = False, v_head: int = 8, cast: bool = False, axis: int = -1,
               second_user: bool = False, elem: int = F) -> onnx.ModelProto:
    """q (1,2,4,8) k (1,2,6,8) v (1,2,6,v_head) mask (1,1,1,6): softmax((q·s)·kᵀ + mask)·v, or a deviation."""
    np_type = np.float16 if elem == H16 else np.float32
    s = numpy_helper.from_array(np.array(0.35, np_type), "s")
    nodes = [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2], name="kt")]
    if scale_after:
        nodes += [helper.make_node("MatMul", ["q", "kt"], ["qk0"], name="bmm1"),
                  helper.make_node("Mul", ["qk0", "s"], ["qk"], name="scale")]
    else:
        nodes += [helper.make_node("Mul", ["q", "s"], ["qs"], name="scale"),
                  helper.make_node("MatMul", ["qs", "kt"], ["qk"], name="bmm1")]
    nodes.append(helper.make_node("Add", ["qk", "mask"], ["logits"], name="mask"))
    if cast:
        nodes.append(helper.make_node("Cast", ["logits"], ["logits32"], to=F, name="cast"))
    nodes.append(helper.make_node("Softmax", ["logits32" if cast else "logits"], ["p"], axis=axis, name="softmax"))
    p = "p"
    if cast:
        nodes.append(helper.make_node("Cast", ["p"], ["p16"], to=elem, name="back"))
        p = "p16"
    nodes.append(helper.make_node("MatMul", [p, "v"], ["y"], name="bmm2"))
    outputs = [helper.make_tensor_value_info("y", elem, None)]
    if second_user:
        nodes.append(helper.make_node("Identity", ["p"], ["p_out"], name="extra"))
        outputs.append(helper.make_tensor_value_info("p_out", F if cast else elem, None))
    inputs = [helper.make_tensor_value_info("q", elem, [1, 2, 4, 8]), helper.make_tensor_value_info("k", elem, [1, 2, 6, 8]),
              helper.make_tensor_value_info("v", elem, [1, 2, 6, v_head]),
              helper.make_tensor_value_info("mask", elem, [1, 1, 1, 6])]
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=[s])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _attention_messages(model) -> list[str]:
    return [v.message for v in lint_model(model, "g") if v.rule == "attention-form"]


@pytest.mark.parametrize("elem", [F, H16])
def test_fusable_form_passes(elem) -> None:
    assert _attention_messages(_attention(elem=elem)) == []


@pytest.mark.parametrize("kwargs, expected", [
    ({"scale_after": True}, "Mul between Q·Kᵀ and Softmax"),
    ({"v_head": 4}, "head sizes differ (Q 8, K 8, V 4)"),
    ({"cast": True, "elem": H16}, "Cast between Q·Kᵀ and Softmax"),
    ({"axis": 2}, "softmax over axis 2"),
    ({"second_user": True}, "not one MatMul with V"),
])
def test_each_deviation_is_reported(kwargs, expected) -> None:
    messages = _attention_messages(_attention(**kwargs))
    assert len(messages) == 1 and expected in messages[0], messages


def test_exported_graphs_are_fusable(exported_tiny_256) -> None:
    """Every attention block of the four exported graphs is in the fusable form (and there are blocks)."""
    from sam2rt.manifest import load_manifest

    manifest = load_manifest(exported_tiny_256)
    softmaxes = {name: sum(n.op_type == "Softmax" for n in onnx.load(str(manifest.graph_path(name))).graph.node)
                 for name in ("image_encoder", "memory_attention", "mask_decoder")}
    assert all(count > 0 for count in softmaxes.values()), softmaxes
    assert [v for v in lint_model_dir(exported_tiny_256) if v.rule == "attention-form"] == []
