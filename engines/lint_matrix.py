"""Per-node checks against the onnx-tensorrt support matrix for TensorRT 10.3 (``trt10_3_ops.json``).

The matrix is data (with its source and the changelog entries applied, see the JSON's ``source``); this
module only reads it: is the op supported, is its data type one the op takes, are its checkable
restrictions (attribute values, inputs that must be initializers or zero) met. Needs ``onnx``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np

MATRIX_FILE = Path(__file__).with_name("trt10_3_ops.json")


@lru_cache(maxsize=1)
def support_matrix() -> dict[str, Any]:
    """The parsed ``trt10_3_ops.json``: {"tensorrt", "source", "opset", "operators": {op: entry}}."""
    return json.loads(MATRIX_FILE.read_text())


class NodeContext:
    """What the checks need to know about a graph: element types and constant values by tensor name."""

    def __init__(self, types: Mapping[str, int], constants: Mapping[str, np.ndarray]) -> None:
        self.types = types
        self.constants = constants

    def type_name(self, tensor: str) -> str | None:
        import onnx

        t = self.types.get(tensor)
        return None if t is None else onnx.TensorProto.DataType.Name(t)


def _attr(node: Any, name: str) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return None


def _typed_tensors(node: Any, where: str) -> list[str]:
    """The tensor names whose element type the matrix's ``types`` list is about (see ``type_of``)."""
    if where == "any":
        return []
    names = []
    for part in where.split(","):
        kind, index = part.split(":")
        seq = node.input if kind == "input" else node.output
        i = int(index)
        if i < len(seq) and seq[i]:
            names.append(seq[i])
    return names


def check_node(node: Any, ctx: NodeContext) -> list[tuple[str, str]]:
    """Every way ``node`` falls outside the matrix, as (rule, message) pairs; empty when it is within."""
    entry = support_matrix()["operators"].get(node.op_type)
    if entry is None or not entry["supported"]:
        why = "has no TensorRT importer" if entry is not None else "is not in the support matrix"
        return [("unsupported-op", f"{node.op_type} {why} (TensorRT 10.3 ONNX parser)")]
    problems: list[tuple[str, str]] = []
    allowed = set(entry.get("types", []))
    for tensor in _typed_tensors(node, entry.get("type_of", "input:0")):
        t = ctx.type_name(tensor)
        if allowed and t is not None and t not in allowed:
            problems.append(("type", f"{node.op_type} on {t} tensor {tensor!r}: TensorRT 10.3 takes "
                                     f"{', '.join(sorted(allowed))}"))
    checks = entry.get("checks", {})
    for name, values in checks.get("attributes", {}).items():
        value = _attr(node, name)
        if value is not None and value not in values:
            problems.append(("attribute", f"{name}={value!r} is not supported (TensorRT 10.3 takes {values})"))
    for name in checks.get("all_ones_attributes", []):
        value = _attr(node, name)
        if value is not None and any(v != 1 for v in value):
            problems.append(("attribute", f"{name}={list(value)} must be empty or all ones"))
    for name in checks.get("forbidden_attributes", []):
        if _attr(node, name) is not None:
            problems.append(("attribute", f"attribute {name!r} is not supported"))
    if "max_outputs" in checks and sum(1 for o in node.output if o) > checks["max_outputs"]:
        problems.append(("outputs", f"only the first {checks['max_outputs']} output(s) are supported"))
    for i in checks.get("constant_inputs", []):
        if i < len(node.input) and node.input[i] and node.input[i] not in ctx.constants:
            problems.append(("constant-input", f"input {i} ({node.input[i]!r}) must be an initializer or "
                                               "Constant (constant-fold the graph)"))
    for i in checks.get("zero_inputs", []):
        if i < len(node.input) and node.input[i]:
            value = ctx.constants.get(node.input[i])
            if value is None or np.any(value != 0):
                problems.append(("zero-input", f"input {i} ({node.input[i]!r}) must be a constant of zeros "
                                               "(symmetric quantization)"))
    return problems
