"""FP16 mixed-precision graphs: onnxconverter-common's float16 conversion with an FP32 block list.

Why this converter: ModelOpt AutoCast (``modelopt.onnx.autocast``) was the other candidate, but its ONNX
extra pins ``onnxruntime-gpu`` and ``onnx~=1.21`` and pulls CuPy and CUDA wheels, which cannot share an
environment with the CPU ``onnxruntime`` the runtime and CI use. onnxconverter-common is a small
pure-Python package from the ONNX project that converts initializers, constants and value types and
inserts Cast nodes around the nodes it is told to keep in FP32.

What stays FP32 (the block list, configurable): the converter's own default list (Resize, Range, ...),
LayerNormalization and the reductions of the hand-written LayerNorm2d (ReduceMean, Pow, Sqrt), the sine
encodings (Sin, Cos) and every RoPE rotation node (the Muls against the ``*_cos``/``*_sin`` tables and the
Add/Sub that combine them), and the decoder's object-score head (three Gemms on one token per object: its
logit decides presence, and FP16 rounding of the head's hidden activations moves it -- measured below). Graph
inputs and outputs stay FP32, so the contract and the runtime are unchanged. The attention chain (Q·Kᵀ,
scale, additive key mask, Softmax) is FP16 by default, so TensorRT can fuse it into one attention kernel (it
does so only within one precision); ``attention_fp32`` keeps it FP32.
Measured against the official predictor (tiny, 512 px, random weights, 40 frames, 2 objects, ONNX Runtime
CPU): mean IoU 0.998799 with FP16 attention, 0.998826 with FP32 attention. The score head: on a model whose
object scores sit on the decision boundary (docs/precision.md), the head in FP16 flipped presence on 16 of
105 frame-object masks (only its last Gemm FP32: 17), the head in FP32 on none.

Two defects of onnxconverter-common 1.16 are repaired after conversion (both make ONNX Runtime refuse the
model): Cast nodes of the source graph keep ``to=FLOAT`` although their consumers are now FP16, and nodes
that read a graph output keep reading the FP32 name instead of the FP16 value before the output's Cast.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import onnx
from onnx import TensorProto
from tqdm import tqdm

from sam2rt import contract as C
from sam2rt.calibration.variant import check_out_dir, load_fp32_source, write_variant
from sam2rt.errors import Sam2rtError

# Ops kept in FP32 by default, besides onnxconverter-common's DEFAULT_OP_BLOCK_LIST.
# (Softmax goes with the attention logits: see Fp16Config.attention_fp32.)
FP32_OPS = ("LayerNormalization", "ReduceMean", "ReduceSum", "Pow", "Sqrt", "Sin", "Cos")
_ROPE_TABLE_SUFFIXES = ("_cos", "_sin")
_LOGIT_PATH_OPS = ("Div", "Mul", "Add", "Where")  # scale and key mask between Q·Kᵀ and Softmax
SCORE_HEAD_PREFIX = "/pred_obj_score_head/"  # the mask decoder's object-score MLP (export/ module names)
QDQ_OPSET = 19  # the first opset whose QuantizeLinear/DequantizeLinear take FP16 values and scales


@dataclass(frozen=True)
class Fp16Config:
    """What stays FP32. CLI flags of ``sam2rt convert`` map onto these fields.

    keep_ops: op types computed in FP32 (added to the converter's default block list).
    keep_nodes: node names computed in FP32 (exact names, e.g. from Netron).
    attention_fp32: keep Q·Kᵀ, its scale/mask and Softmax in FP32 (off: the fusable FP16 form, measured above).
    rope_fp32: keep the RoPE rotations (and their cos/sin tables) in FP32.
    score_head_fp32: keep the mask decoder's object-score head (its MLP) in FP32.
    graphs: graphs to convert; the others are copied as FP32.
    """

    keep_ops: tuple[str, ...] = FP32_OPS
    keep_nodes: tuple[str, ...] = ()
    attention_fp32: bool = False
    rope_fp32: bool = True
    score_head_fp32: bool = True
    graphs: tuple[str, ...] = tuple(g.name for g in C.GRAPHS)


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def rope_nodes(graph: onnx.GraphProto) -> set[str]:
    """Names of the RoPE rotation nodes: Muls against ``*_cos``/``*_sin`` tables and the Add/Sub after them."""
    tables = {i.name for i in graph.initializer if i.name.endswith(_ROPE_TABLE_SUFFIXES)}
    # the tracer shares equal tables between layers through Identity nodes
    aliases = [n for n in graph.node if n.op_type == "Identity" and n.input[0] in tables]
    tables |= {n.output[0] for n in aliases}
    users = _consumers(graph)
    muls = [n for n in graph.node if n.op_type == "Mul" and any(i in tables for i in n.input)]
    names = {n.name for n in muls} | {n.name for n in aliases}
    for mul in muls:
        names.update(u.name for u in users.get(mul.output[0], []) if u.op_type in ("Add", "Sub"))
    return names


def attention_logit_nodes(graph: onnx.GraphProto) -> set[str]:
    """Softmax inputs back to their MatMul: Q·Kᵀ, the scale and the additive key mask."""
    producer = {o: n for n in graph.node for o in n.output}
    names: set[str] = set()
    for softmax in (n for n in graph.node if n.op_type == "Softmax"):
        node = producer.get(softmax.input[0])
        while node is not None and node.op_type in _LOGIT_PATH_OPS:
            names.add(node.name)
            # follow the data path: the input that is not a constant (scale) or a mask
            node = next((producer[i] for i in node.input if i in producer and producer[i].op_type != "Constant"),
                        None)
        if node is not None and node.op_type == "MatMul":
            names.add(node.name)
    return names


def fp32_nodes(graph: onnx.GraphProto, cfg: Fp16Config) -> set[str]:
    """Every node name that ``cfg`` keeps in FP32 (besides the op-type block list)."""
    names = set(cfg.keep_nodes)
    if cfg.rope_fp32:
        names |= rope_nodes(graph)
    if cfg.attention_fp32:
        names |= attention_logit_nodes(graph)
    if cfg.score_head_fp32:
        names |= {n.name for n in graph.node if n.name.startswith(SCORE_HEAD_PREFIX)}
    return names


def convert_graph(model: onnx.ModelProto, cfg: Fp16Config) -> tuple[onnx.ModelProto, dict]:
    """FP16 copy of one FP32 graph with FP32 inputs/outputs; returns (model, what stayed FP32)."""
    from onnxconverter_common.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    source_casts = {n.name for n in model.graph.node if n.op_type == "Cast"}
    keep_nodes = fp32_nodes(model.graph, cfg)
    # TensorRT fuses MatMul -> scale -> mask -> Softmax -> MatMul into one attention kernel only when the chain
    # is in one precision, so Softmax stays FP32 exactly when the logits do
    keep_ops = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(cfg.keep_ops) | ({"Softmax"} if cfg.attention_fp32 else set()))
    kept = sum(1 for n in model.graph.node if n.op_type in keep_ops or n.name in keep_nodes)
    with warnings.catch_warnings(record=True) as clamped:
        # one warning per weight below FP16's smallest normal (set to 1e-7) or above 1e4 (clamped): counted
        warnings.simplefilter("always")
        converted = convert_float_to_float16(model, keep_io_types=True, op_block_list=keep_ops,
                                             node_block_list=sorted(keep_nodes))
    _repair_source_casts(converted.graph, source_casts - keep_nodes)
    _repair_output_readers(converted.graph)
    _repair_kept_outputs(converted.graph, keep_nodes)
    computing = sum(1 for n in model.graph.node if n.op_type not in ("Constant", "Shape", "Gather", "Unsqueeze",
                                                                     "Concat", "Reshape", "Cast"))
    return converted, {"clamped_values": sum("truncated" in str(w.message) for w in clamped), "fp32_nodes": kept, "compute_nodes": computing, "fp32_ops": keep_ops,
                       "rope_fp32": cfg.rope_fp32, "attention_fp32": cfg.attention_fp32,
                       "score_head_fp32": cfg.score_head_fp32}


def qdq_to_fp16(model: onnx.ModelProto, cfg: Fp16Config = Fp16Config()) -> tuple[onnx.ModelProto, dict]:
    """FP16 copy of an FP32 graph that may hold INT8 Q/DQ (``convert_graph`` with ``cfg``'s FP32 block list).

    The Q/DQ pairs then quantize FP16 values with FP16 scales (rounded from the FP32 calibration), so in a
    strongly typed TensorRT network everything outside them runs in FP16. ONNX takes FP16 in
    QuantizeLinear/DequantizeLinear from opset 19 (``QDQ_OPSET``), so a graph with Q/DQ is first converted to
    it (ops changed from 18 to 19 only gained types or attributes whose defaults keep 18's behaviour).
    """
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        model = _with_opset(model, QDQ_OPSET)
    return convert_graph(model, cfg)


def _with_opset(model: onnx.ModelProto, version: int) -> onnx.ModelProto:
    current = next(i.version for i in model.opset_import if i.domain in ("", "ai.onnx"))
    if current >= version:
        return model
    return onnx.version_converter.convert_version(model, version)


def _repair_source_casts(graph: onnx.GraphProto, casts: set[str]) -> None:
    """Casts of the source graph that produced FP32 feed FP16 nodes now: make them produce FP16."""
    for node in graph.node:
        if node.op_type == "Cast" and node.name in casts:
            for attr in node.attribute:
                if attr.name == "to" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.FLOAT16


def _cast_to(node: onnx.NodeProto) -> int:
    return next(a.i for a in node.attribute if a.name == "to")


def _repair_kept_outputs(graph: onnx.GraphProto, keep_nodes: set[str]) -> None:
    """A graph output computed by a node kept in FP32 stays FP32 (the contract), and its FP16 readers read an
    FP16 copy. The converter instead casts that node's output to FP16 under the output's own name and
    declares the graph output FP16 (e.g. the object-score head kept FP32: its logits also feed the decoder's
    no-object gating, which is FP16)."""
    outputs = {o.name: o for o in graph.output}
    casts = [n for n in graph.node
             if n.op_type == "Cast" and n.output[0] in outputs and _cast_to(n) == TensorProto.FLOAT16]
    nodes = list(graph.node)
    for cast in casts:
        name, fp32_value = cast.output[0], cast.input[0]
        cast.output[0] = f"{name}_fp16"  # the converter's Cast now feeds the FP16 readers only
        for reader in nodes:
            if reader is not cast:
                reader.input[:] = [(fp32_value if reader.name in keep_nodes else cast.output[0]) if i == name
                                   else i for i in reader.input]
        nodes.insert(nodes.index(cast) + 1, onnx.helper.make_node(
            "Cast", [fp32_value], [name], name=f"{cast.name}_fp32_output", to=TensorProto.FLOAT))
        outputs[name].type.tensor_type.elem_type = TensorProto.FLOAT
    if casts:
        del graph.node[:]
        graph.node.extend(nodes)


def _repair_output_readers(graph: onnx.GraphProto) -> None:
    """Nodes reading a graph output must read the FP16 value the converter casts to that output."""
    outputs = {o.name for o in graph.output}
    fp16_source = {n.output[0]: n.input[0] for n in graph.node
                   if n.op_type == "Cast" and n.output[0] in outputs and _cast_to(n) == TensorProto.FLOAT}
    for node in graph.node:
        if node.op_type == "Cast" and node.output[0] in outputs:
            continue
        for i, name in enumerate(node.input):
            if name in fp16_source:
                node.input[i] = fp16_source[name]


def convert_model(model_dir: str | Path, out: str | Path, cfg: Fp16Config = Fp16Config(),
                  log: Callable[[str], None] = print) -> Path:
    """Write an FP16 variant of the FP32 export in ``model_dir`` to ``out``; returns the manifest path."""
    source = load_fp32_source(model_dir, "FP16 conversion")
    check_out_dir(source, out)  # before the work: a bad --out fails at once
    unknown = [g for g in cfg.graphs if g not in C.GRAPHS_BY_NAME]
    if unknown:
        raise Sam2rtError(f"unknown graph(s) {unknown}; the graphs are {[g.name for g in C.GRAPHS]}")
    graphs: dict[str, onnx.ModelProto] = {}
    details: dict[str, dict] = {}
    for spec in tqdm(C.GRAPHS, desc="fp16", unit="graph"):
        model = onnx.load(str(source.graph_path(spec.name)))
        if spec.name in cfg.graphs:
            graphs[spec.name], details[spec.name] = convert_graph(model, cfg)
            details[spec.name]["precision"] = "fp16"
        else:
            graphs[spec.name], details[spec.name] = model, {"precision": "fp32"}
    for name, d in details.items():
        if d["precision"] == "fp16":
            log(f"{name}: fp16, {d['fp32_nodes']} nodes kept in fp32")
        else:
            log(f"{name}: kept fp32")
    from importlib.metadata import version

    return write_variant(source, out, "fp16", graphs, {
        "tool": "onnxconverter-common", "tool_version": version("onnxconverter-common"),
        "keep_nodes": list(cfg.keep_nodes), "graphs": details})
