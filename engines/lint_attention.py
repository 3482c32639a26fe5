"""Lint rule ``attention-form``: every attention block in the form TensorRT fuses into one attention kernel.

TensorRT's fused attention (docs/gpu.md cites the documentation) computes ``softmax((Q·s)·Kᵀ + mask)·V``
from primitive layers: the first batched MatMul (BMM1) of Q and Kᵀ, at most an additive mask, a Softmax over
the keys, straight into the second MatMul (BMM2) with V; Q, K and V of one head size H ([B, N, S, H]); the
scale multiplied into Q and/or K *before* BMM1. An attention block here is a Softmax; it is reported when

- something other than one Add (the mask) sits between BMM1 and the Softmax (a scale after the product, a
  Cast to another precision, ...), or the Softmax input is not a MatMul at all;
- the Softmax is not over the last axis;
- its output feeds anything but exactly one MatMul as the left operand (a Cast, Q/DQ, a second consumer);
- the head sizes of Q, K and V differ (e.g. memory attention's "cpu" form, 64-wide V against 256);
- BMM1, the Softmax and BMM2 are not all of one element type (TensorRT fuses within one precision).

Works on the ONNX model without TensorRT. Head sizes come from ONNX Runtime's symbolic shape inference, which
follows the Reshapes of the heads that ONNX's own inference leaves unknown; where a size stays unknown, that
comparison is skipped.
"""

from __future__ import annotations

from typing import Any

_MASK_OPS = ("Add",)


def _shapes(model: Any) -> dict[str, list[int | None]]:
    shapes: dict[str, list[int | None]] = {}
    g = model.graph
    for v in [*g.input, *g.output, *g.value_info]:
        t = v.type.tensor_type
        if v.type.HasField("tensor_type") and t.HasField("shape"):
            shapes[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    for init in g.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _symbolic(model: Any) -> Any | None:
    """``model`` after ONNX Runtime's symbolic shape inference, or None where it is missing or fails."""
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        return SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception:  # an optional help: ONNX's own inference (``inferred``) is the fallback
        return None


def _softmax_axis(node: Any, rank: int | None) -> int | None:
    axis = next((a.i for a in node.attribute if a.name == "axis"), -1)
    if axis < 0 and rank is not None:
        axis += rank
    return axis


def attention_findings(model: Any, inferred: Any, types: dict[str, int]) -> list[tuple[str, str, str]]:
    """``(node name, op type, message)`` for every Softmax of ``model`` that is not in TensorRT's fusable
    attention form; ``inferred`` is ``model`` after ONNX shape inference, ``types`` its element types by name."""
    g = inferred.graph
    if not any(n.op_type == "Softmax" for n in g.node):
        return []
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    shapes = {**_shapes(inferred), **_shapes(_symbolic(model) or inferred)}
    found = []
    for index, sm in enumerate(n for n in g.node if n.op_type == "Softmax"):
        label = sm.name or f"Softmax#{index}"
        problems = []
        rank = len(shapes[sm.input[0]]) if sm.input[0] in shapes else None
        axis = _softmax_axis(sm, rank)
        if rank is not None and axis != rank - 1:
            problems.append(f"softmax over axis {axis}, not the last (keys)")
        node, between = producer.get(sm.input[0]), []
        while node is not None and node.op_type != "MatMul":
            between.append(node)
            data = [producer[i] for i in node.input if i in producer and producer[i].op_type != "Constant"]
            node = data[0] if len(data) == 1 or node.op_type not in _MASK_OPS else _logit_side(node, producer)
        bmm1 = node
        extra = [n.op_type for n in between if n.op_type not in _MASK_OPS] + [n.op_type for n in between
                                                                           if n.op_type in _MASK_OPS][1:]
        if bmm1 is None:
            problems.append("its input does not come from a MatMul (Q·Kᵀ)")
        elif extra:
            problems.append(f"{', '.join(extra)} between Q·Kᵀ and Softmax (scale Q or K before the product; "
                            "only an additive mask may sit there)")
        users = consumers.get(sm.output[0], [])
        bmm2 = users[0] if len(users) == 1 and users[0].op_type == "MatMul" and users[0].input[0] == sm.output[0] \
            else None
        if bmm2 is None:
            problems.append(f"its output feeds {[u.op_type for u in users]}, not one MatMul with V")
        if bmm1 is not None and bmm2 is not None:
            q, kt, v = (shapes.get(bmm1.input[0]), shapes.get(bmm1.input[1]), shapes.get(bmm2.input[1]))
            heads = {"Q": q[-1] if q else None, "K": kt[-2] if kt and len(kt) >= 2 else None,
                     "V": v[-1] if v else None}
            if None not in heads.values() and len(set(heads.values())) > 1:
                problems.append(f"head sizes differ ({', '.join(f'{k} {h}' for k, h in heads.items())}): V must "
                                "be projected to the head size of Q and K before the weighted sum")
            dtypes = {types.get(t) for t in (bmm1.output[0], sm.output[0], bmm2.output[0])} - {None}
            if len(dtypes) > 1:
                problems.append("Q·Kᵀ, Softmax and the weighted sum are not of one precision")
        if problems:
            found.append((label, "Softmax", "attention not in TensorRT's fusable form softmax((Q·s)·Kᵀ + mask)·V: "
                                            + "; ".join(problems)))
    return found


def _logit_side(add: Any, producer: dict[str, Any]) -> Any:
    """The operand of a mask Add that comes from Q·Kᵀ: the one with a MatMul (or more ops) above it, preferring
    a direct MatMul (the mask is computed from graph inputs, not from a product)."""
    data = [producer[i] for i in add.input if i in producer]
    direct = [n for n in data if n.op_type == "MatMul"]
    return direct[0] if direct else data[0]
