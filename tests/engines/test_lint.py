"""The TensorRT 10.3 graph lint: one tiny hand-made graph per rule, the support matrix data, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sam2rt.cli import main  # noqa: E402
from sam2rt.engines.lint import lint_file, lint_model  # noqa: E402
from sam2rt.engines.lint_matrix import support_matrix  # noqa: E402

F, I32, I64 = TensorProto.FLOAT, TensorProto.INT32, TensorProto.INT64


def _model(nodes, inputs, outputs, inits=(), opset: int = 18):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name: str, elem: int, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def _rules(model) -> list[str]:
    return sorted(v.rule for v in lint_model(model, "g"))


def test_clean_graph_passes() -> None:
    m = _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [_vi("x", F, [1, 4])], [_vi("y", F, [1, 4])])
    assert lint_model(m, "g") == []


@pytest.mark.parametrize("op", ["OneHot", "NonZero"])
def test_banned_ops(op: str) -> None:
    if op == "OneHot":
        nodes = [helper.make_node("OneHot", ["i", "depth", "vals"], ["y"], name="oh")]
        inits = [numpy_helper.from_array(np.array(4, np.int32), "depth"),
                 numpy_helper.from_array(np.array([0, 1], np.float32), "vals")]
        inputs, out = [_vi("i", I32, [3])], _vi("y", F, [3, 4])
    else:
        nodes, inits = [helper.make_node("NonZero", ["x"], ["idx"], name="nz")], []
        inputs, out = [_vi("x", F, [3])], _vi("idx", I64, [1, None])
    found = lint_model(_model(nodes, inputs, [out], inits), "g")
    banned = [v for v in found if v.rule == "banned-op"]
    assert len(banned) == 1 and banned[0].op == op and banned[0].node in ("oh", "nz")
    assert op in str(banned[0])


def test_if_is_banned() -> None:
    branch = lambda v: helper.make_graph(  # noqa: E731
        [helper.make_node("Constant", [], ["o"], value=numpy_helper.from_array(np.array([v], np.float32)))],
        "b", [], [_vi("o", F, [1])])
    node = helper.make_node("If", ["c"], ["y"], name="cond", then_branch=branch(1.0), else_branch=branch(0.0))
    assert "banned-op" in _rules(_model([node], [_vi("c", TensorProto.BOOL, [])], [_vi("y", F, [1])]))


def test_double_and_int64_io() -> None:
    cast = helper.make_node("Cast", ["x"], ["d"], to=TensorProto.DOUBLE, name="to_double")
    back = helper.make_node("Cast", ["d"], ["y"], to=I64, name="to_int64")
    rules = _rules(_model([cast, back], [_vi("x", F, [2])], [_vi("y", I64, [2])]))
    assert rules.count("double") == 2  # the DOUBLE tensor and the Cast to it
    assert "int64-io" in rules


def test_shape_from_input_values_is_flagged_but_not_from_shapes() -> None:
    from_values = [helper.make_node("Cast", ["n"], ["n64"], to=I64, name="cast"),
                   helper.make_node("Reshape", ["x", "n64"], ["y"], name="reshape")]
    found = lint_model(_model(from_values, [_vi("x", F, [2, 3]), _vi("n", I32, [1])], [_vi("y", F, [None])]), "g")
    flagged = [v for v in found if v.rule == "value-shape"]
    assert [v.node for v in flagged] == ["reshape"] and "['n']" in flagged[0].message
    from_shape = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
                  helper.make_node("Expand", ["x", "s"], ["y"], name="expand")]
    assert lint_model(_model(from_shape, [_vi("x", F, [2, 3])], [_vi("y", F, [2, 3])]), "g") == []


def test_support_matrix_rules() -> None:
    det = helper.make_node("Det", ["x"], ["y"], name="det")
    assert _rules(_model([det], [_vi("x", F, [2, 2])], [_vi("y", F, [])])) == ["unsupported-op"]
    cubic = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="cubic", name="resize")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    assert _rules(_model([cubic], [_vi("x", F, [1, 1, 2, 2])], [_vi("y", F, [1, 1, 4, 4])], [scales])) == ["attribute"]
    mean = helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="mean")
    assert _rules(_model([mean], [_vi("x", F, [2, 2]), _vi("axes", I64, [1])], [_vi("y", F, None)])) == \
        ["constant-input", "int64-io", "value-shape"]
    exp = helper.make_node("Exp", ["x"], ["y"], name="exp")
    assert _rules(_model([exp], [_vi("x", I32, [2])], [_vi("y", I32, [2])])) == ["type"]
    custom = helper.make_node("Fancy", ["x"], ["y"], domain="com.example", name="fancy")
    assert _rules(_model([custom], [_vi("x", F, [2])], [_vi("y", F, [2])])) == ["domain"]
    q = helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["y"], name="q")
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "scale"),
             numpy_helper.from_array(np.array(3, np.int8), "zp")]
    assert _rules(_model([q], [_vi("x", F, [2])], [_vi("y", TensorProto.INT8, [2])], inits)) == ["zero-input"]


def test_opset_outside_range() -> None:
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", F, [1])], [_vi("y", F, [1])], opset=21)
    assert _rules(m) == ["opset"]


def test_matrix_data_names_its_source() -> None:
    matrix = support_matrix()
    assert matrix["tensorrt"] == "10.3"
    assert "onnx-tensorrt" in matrix["source"]["matrix"] and "Changelog" in matrix["source"]["changelog"]
    ops = matrix["operators"]
    assert ops["MatMul"]["supported"] and not ops["Det"]["supported"]
    assert "restrictions" not in ops["Slice"]  # 10.3 takes tensor axes (changelog)
    assert ops["Pad"]["checks"]["constant_inputs"] == [3]  # tensor axes only from 10.4


def test_cli_lint_exit_code_names_the_node(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.onnx"
    nodes = [helper.make_node("NonZero", ["x"], ["idx"], name="the_nonzero")]
    onnx.save(_model(nodes, [_vi("x", F, [3])], [_vi("idx", I64, [1, None])]), str(bad))
    assert main(["lint", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "the_nonzero" in out and "banned-op" in out
    assert len(lint_file(bad)) == 2  # NonZero, INT64 output
