"""Graph lint: what TensorRT 10.3's ONNX parser (JetPack 6, the oldest TensorRT we support) rejects or restricts.

Runs on the ONNX files, without TensorRT, so CI and every ``sam2rt export/convert/calibrate`` can check
the graphs a GPU user will build. Rules (each :class:`Violation` names its rule):

- ``banned-op``: ``If``, ``Loop``, ``Scan``, ``OneHot``, ``NonZero``. TensorRT has importers for some, but
  conditionals with computed conditions and rank-changing INT64 branches, ``OneHot`` feeding a shape
  ("IOneHotLayer cannot be used to compute a shape tensor") and data-dependent shapes fail or run slowly;
  our graphs need none of them once constant-folded and exported with ``expand``.
- ``double``: DOUBLE tensors (TensorRT casts them down, clamping).
- ``int64-io``: INT64 graph inputs or outputs (the runtime binds int32/float32/bool/uint8 buffers).
- ``value-shape``: a shape operand (Reshape's shape, Expand's, Tile's repeats, Slice's bounds, ...) computed
  from a graph input's *values*; shapes may come from input shapes (``Shape``/``Size``) only.
- ``opset``/``domain``: an opset outside 9..20, or a node outside the standard ONNX domain (a plugin).
- the support matrix (``lint_matrix``): op supported, data type, attribute values, constant inputs.
- ``attention-form``: an attention block (a Softmax) not in the form TensorRT fuses,
  ``softmax((Q·s)·Kᵀ + mask)·V`` with equal head sizes in one precision (``lint_attention``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sam2rt.engines.lint_attention import attention_findings
from sam2rt.engines.lint_matrix import NodeContext, check_node, support_matrix
from sam2rt.errors import Sam2rtError

BANNED_OPS = {
    "If": "TensorRT conditionals reject computed conditions with rank-changing INT64 branches: constant-fold the "
          "graph, or choose on the host",
    "Loop": "loops are rejected or slow: unroll at export",
    "Scan": "loops are rejected or slow: unroll at export",
    "OneHot": "IOneHotLayer cannot compute a shape tensor: constant-fold, or export with expand instead of "
              "repeat_interleave",
    "NonZero": "data-dependent output shape: export a fixed-shape mask instead",
}
_REDUCE_OPS = ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
               "ReduceProd", "ReduceSum", "ReduceSumSquare")
# Inputs that TensorRT treats as shape tensors, per op.
SHAPE_OPERANDS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "Slice": (1, 2, 3, 4), "ConstantOfShape": (0,),
    "Range": (0, 1, 2), "Resize": (2, 3), "Upsample": (1,), "OneHot": (1,), "Pad": (1, 3), "TopK": (1,),
    "Squeeze": (1,), "Unsqueeze": (1,), "Split": (1,), "CumSum": (1,), **{op: (1,) for op in _REDUCE_OPS},
}
_SHAPE_ONLY = ("Shape", "Size")  # their outputs depend on the input's shape, not its values


@dataclass(frozen=True)
class Violation:
    """One lint finding: the graph, the node (name and op type; empty for graph-level rules), rule, message."""

    graph: str
    node: str
    op: str
    rule: str
    message: str

    def __str__(self) -> str:
        where = f"node {self.node!r} ({self.op})" if self.op else "graph"
        return f"{self.graph}: {where}: [{self.rule}] {self.message}"


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise Sam2rtError('the graph lint needs the onnx package: pip install "sam2rt[trt-cu12]" '
                          "(or pip install onnx)") from None
    return onnx


def _infer(model: Any) -> Any:
    """``model`` after ONNX shape inference (the model itself where inference fails)."""
    try:
        return _onnx().shape_inference.infer_shapes(model)
    except Exception:  # inference is a help for the type and attention rules, not a requirement
        return model


def _context(inferred: Any) -> NodeContext:
    """Element types (after ONNX shape inference) and constant values by tensor name."""
    onnx = _onnx()
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.output, *g.value_info]
             if v.type.HasField("tensor_type")}
    constants = {}
    for init in g.initializer:
        types[init.name] = init.data_type
        constants[init.name] = onnx.numpy_helper.to_array(init)
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    types[node.output[0]] = a.t.data_type
                    constants[node.output[0]] = onnx.numpy_helper.to_array(a.t)
                elif a.name in ("value_float", "value_floats", "value_int", "value_ints"):
                    constants[node.output[0]] = np.asarray(onnx.helper.get_attribute_value(a))
    return NodeContext(types, constants)


def _graph_rules(model: Any, name: str, ctx: NodeContext) -> list[Violation]:
    onnx = _onnx()
    g = model.graph
    found = []
    opset = support_matrix()["opset"]
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and not opset["min"] <= imp.version <= opset["max"]:
            found.append(Violation(name, "", "", "opset", f"opset {imp.version} is outside TensorRT 10.3's "
                                                           f"{opset['min']}..{opset['max']}"))
    for kind, values in (("input", g.input), ("output", g.output)):
        for v in values:
            if v.type.tensor_type.elem_type == onnx.TensorProto.INT64:
                found.append(Violation(name, "", "", "int64-io", f"graph {kind} {v.name!r} is INT64; use INT32"))
    doubles = sorted(t for t, dt in ctx.types.items() if dt == onnx.TensorProto.DOUBLE)
    if doubles:
        found.append(Violation(name, "", "", "double", f"DOUBLE tensors: {doubles[:5]}"
                                                       f"{' ...' if len(doubles) > 5 else ''}"))
    return found


def _value_sources(model: Any) -> dict[str, frozenset[str]]:
    """For every tensor, the graph inputs whose *values* it depends on (``Shape``/``Size`` cut the chain)."""
    sources: dict[str, frozenset[str]] = {i.name: frozenset([i.name]) for i in model.graph.input}
    empty: frozenset[str] = frozenset()
    for node in model.graph.node:  # ONNX graphs are topologically sorted
        if node.op_type in _SHAPE_ONLY:
            deps = empty
        else:
            deps = frozenset().union(*(sources.get(i, empty) for i in node.input if i))
        for o in node.output:
            sources[o] = deps
    return sources


def _node_rules(model: Any, name: str, ctx: NodeContext) -> list[Violation]:
    onnx = _onnx()
    found = []
    sources = _value_sources(model)
    for index, node in enumerate(model.graph.node):
        label = node.name or f"#{index}"  # hand-made graphs may leave nodes unnamed
        v = lambda rule, msg: Violation(name, label, node.op_type, rule, msg)  # noqa: E731
        if node.op_type in BANNED_OPS:
            found.append(v("banned-op", f"{node.op_type} must not reach TensorRT: {BANNED_OPS[node.op_type]}"))
        if node.domain not in ("", "ai.onnx"):
            found.append(v("domain", f"custom op of domain {node.domain!r} (TensorRT would need a plugin)"))
            continue
        if node.op_type == "Cast" and any(a.name == "to" and a.i == onnx.TensorProto.DOUBLE for a in node.attribute):
            found.append(v("double", "casts to DOUBLE"))
        for i in SHAPE_OPERANDS.get(node.op_type, ()):
            if i < len(node.input) and sources.get(node.input[i]):
                found.append(v("value-shape", f"shape operand {i} ({node.input[i]!r}) is computed from the values "
                                              f"of graph input(s) {sorted(sources[node.input[i]])}"))
        found += [v(rule, msg) for rule, msg in check_node(node, ctx)]
    return found


def lint_model(model: Any, name: str | None = None) -> list[Violation]:
    """Every violation in an ``onnx.ModelProto`` (empty list: TensorRT 10.3 should parse it)."""
    name = name or model.graph.name
    inferred = _infer(model)
    ctx = _context(inferred)
    attention = [Violation(name, node, op, "attention-form", msg)
                 for node, op, msg in attention_findings(model, inferred, ctx.types)]
    return _graph_rules(model, name, ctx) + _node_rules(model, name, ctx) + attention


def lint_file(path: str | Path, name: str | None = None) -> list[Violation]:
    """:func:`lint_model` of an ONNX file (named after the file stem unless ``name`` is given)."""
    path = Path(path)
    if not path.is_file():
        raise Sam2rtError(f"{path} does not exist; export the model first (sam2rt export ...)")
    return lint_model(_onnx().load(str(path)), name or path.stem)


def lint_model_dir(model_dir: str | Path) -> list[Violation]:
    """Lint the four graphs of a model directory (FP32, FP16 or INT8) and the GPU pre/postprocessing graphs."""
    from sam2rt import contract as C
    from sam2rt.engines.postprocess import postprocess_model
    from sam2rt.engines.preprocess import preprocess_models
    from sam2rt.manifest import load_manifest

    manifest = load_manifest(model_dir)
    found = [v for spec in C.GRAPHS for v in lint_file(manifest.graph_path(spec.name), spec.name)]
    for spec_name, model in preprocess_models(manifest.image_size).items():
        found += lint_model(model, spec_name)
    found += lint_model(postprocess_model(manifest.image_size), C.POSTPROCESS.name)
    return found
