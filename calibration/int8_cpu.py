"""INT8 for ONNX Runtime's CPU kernels: ``sam2rt convert MODEL --precision int8-cpu --out DIR``.

The QDQ graphs of ``sam2rt calibrate`` are laid out for TensorRT and run no faster on ONNX Runtime's CPU
execution provider. What its CPU integer kernels (VNNI on x86) take is *dynamic* quantization:
``onnxruntime.quantization.quantize_dynamic`` stores MatMul/Gemm weights as INT8 and quantizes the other
operand per call (uint8, range from the tensor itself), which ONNX Runtime fuses into
``DynamicQuantizeMatMul`` / ``MatMulIntegerToFloat``. No calibration data is needed: the ranges come from
every call's own activations, which is why this is a ``convert`` and not a ``calibrate``.

Per graph (chosen by measurement, see ``docs/precision-cpu.md``):

* weight MatMul/Gemm of the image encoder, memory attention and memory encoder in INT8, weights per output
  channel, full range (``reduce_range`` off: VNNI has no u8*s8 overflow; it only added error);
* memory attention's attention products (Q·Kᵀ and softmax·V, activation by activation) dynamically
  quantized too: they are most of its time at a full bank. The 1/sqrt(d) scale after Q·Kᵀ is moved onto
  Q first (``scale_before_matmul``), since ONNX Runtime cannot fuse a scale into an integer MatMul and a
  Div over every logit costs more than one over the queries;
* Conv stays FP32 (ConvInteger was slower than the float Conv), and the mask decoder stays FP32 (largest
  error, a small share of a frame).

Before quantizing, ``quant_pre_process`` runs ONNX Runtime's basic optimizations (constant folding), so
weights behind Identity/Transpose nodes of an unfolded export become initializers and get quantized alike
in folded and unfolded exports. Graph inputs and outputs stay FP32 (the contract), so every runtime path
takes the variant; it is meant for the ONNX Runtime CPU backend (TensorRT has no MatMulInteger).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from sam2rt import contract as C
from sam2rt.calibration.ort_optimize import quantize_activation_matmuls
from sam2rt.calibration.variant import check_out_dir, load_fp32_source, write_variant
from sam2rt.errors import Sam2rtError
from sam2rt.manifest import Manifest

PRECISION = "int8-cpu"
DEFAULT_GRAPHS = ("image_encoder", "memory_attention", "memory_encoder")
DEFAULT_ATTENTION_GRAPHS = ("image_encoder", "memory_attention")
WEIGHT_OPS = ("MatMul", "Gemm")
INTEGER_OPS = ("MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
               "QLinearMatMul", "ConvInteger")
_SCALE_OPS = ("Div", "Mul")


@dataclass(frozen=True)
class CpuInt8Config:
    """One ``sam2rt convert --precision int8-cpu`` run; the CLI flags map onto these fields.

    graphs: graphs whose weight MatMul/Gemm become INT8; the others are copied in FP32.
    attention_graphs: graphs (among ``graphs``) whose activation-by-activation MatMuls (attention
        products) are dynamically quantized too.
    per_channel: one weight scale per output channel (else per tensor).
    reduce_range: 7-bit weights, for CPUs without VNNI whose u8*s8 path can saturate (AVX2 only).
    exclude: node names kept in float (exact ONNX names, e.g. "/MatMul_2").
    attention_u8s8: attention products as uint8 x int8 (the right operand symmetric), which MLAS runs on its
        VNNI kernels, instead of quantize_dynamic's uint8 x uint8 (``calibration.ort_optimize``).
    """

    graphs: tuple[str, ...] = DEFAULT_GRAPHS
    attention_graphs: tuple[str, ...] = DEFAULT_ATTENTION_GRAPHS
    per_channel: bool = True
    reduce_range: bool = False
    exclude: tuple[str, ...] = ()
    attention_u8s8: bool = True

    def check(self) -> None:
        """Raise Sam2rtError for graph names that do not exist, saying which do."""
        unknown = [g for g in (*self.graphs, *self.attention_graphs) if g not in C.GRAPHS_BY_NAME]
        if unknown:
            raise Sam2rtError(f"unknown graph(s) {', '.join(unknown)}; choose from {', '.join(C.GRAPHS_BY_NAME)}")


def check_cpu_source(source: Manifest) -> None:
    """Refuse graphs ONNX Runtime's CPU integer path cannot start from: non-FP32 weights, graphs that are
    already quantized. (The manifest's precision is checked by ``load_fp32_source``, missing graph files --
    e.g. a directory of TensorRT engines only -- by ``load_manifest``.)"""
    hint = f"convert the FP32 directory written by `sam2rt export` (re-export it if needed), not {source.directory}"
    for spec in C.GRAPHS:
        path = source.graph_path(spec.name)
        model = onnx.load(str(path), load_external_data=False)
        floats = {t.data_type for t in model.graph.initializer} - {TensorProto.FLOAT}
        floats &= {TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}
        quantized = sorted({n.op_type for n in model.graph.node} & {"QuantizeLinear", "DequantizeLinear", *INTEGER_OPS})
        if floats or quantized:
            what = (f"{', '.join(TensorProto.DataType.Name(t) for t in sorted(floats))} weights" if floats
                    else f"already quantized ({', '.join(quantized)})")
            raise Sam2rtError(f"{path.name} is {what}; int8-cpu needs FP32 graphs: {hint}")


def _scalar(model: onnx.ModelProto, name: str) -> bool:
    """Whether ``name`` is a one-element constant (initializer or Constant node output)."""
    for init in model.graph.initializer:
        if init.name == name:
            return int(np.prod(init.dims)) == 1
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return int(np.prod(node.attribute[0].t.dims)) == 1 if node.attribute[0].name == "value" else False
    return False


def scale_before_matmul(model: onnx.ModelProto) -> int:
    """Rewrite ``Div/Mul(MatMul(a, b), s)`` into ``MatMul(Div/Mul(a, s), b)`` for activation MatMuls.

    ``(a·b)/s = (a/s)·b`` for a scalar ``s``. ONNX Runtime fuses the float form into one FusedMatMul but
    cannot fuse a scale into an integer MatMul; scaling the (queries × d) operand instead of the
    (queries × keys) product is far less work. Only MatMuls whose single consumer is the scale are
    rewritten. Returns how many were.
    """
    weights = {i.name for i in model.graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in model.graph.output}
    moved = 0
    for node in model.graph.node:
        if node.op_type != "MatMul" or node.input[1] in weights or node.output[0] in outputs:
            continue
        users = consumers.get(node.output[0], [])
        if len(users) != 1 or users[0].op_type not in _SCALE_OPS or users[0].input[0] != node.output[0]:
            continue
        scale = users[0]
        if not _scalar(model, scale.input[1]):
            continue
        # scale: out = MatMul_out (op) s  ->  scale now reads a and writes MatMul's old input
        scaled = f"{node.input[0]}_scaled_{moved}"
        a, result = node.input[0], scale.output[0]
        scale.input[0], scale.output[0] = a, scaled
        node.input[0], node.output[0] = scaled, result
        moved += 1
    if moved:  # the scale now runs before its MatMul: restore topological order
        _toposort(model.graph)
    return moved


def _toposort(graph: onnx.GraphProto) -> None:
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        assert ready, "graph has a cycle or an undefined input"
        for n in ready:
            known.update(n.output)
        ordered += ready
        pending = [n for n in pending if n not in ready]
    del graph.node[:]
    graph.node.extend(ordered)


def quantize_graph_cpu(fp32_path: Path, name: str, config: CpuInt8Config) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Dynamic INT8 quantization of one FP32 graph for ONNX Runtime's CPU execution provider.

    Returns:
        (the quantized model, details: settings, weight/attention MatMuls quantized, op counts).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    attention = name in config.attention_graphs
    # quantize_dynamic's per-node INFO lines and its root-logger advice are noise here; we pre-process.
    loggers = [logging.getLogger("onnxruntime.quantization"), logging.getLogger()]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="sam2rt-int8cpu-") as tmp, contextlib.redirect_stdout(io.StringIO()):
            prepared, out = Path(tmp) / "prepared.onnx", Path(tmp) / "quantized.onnx"
            # ORT's basic optimizations fold constants (weights behind Identity/Transpose); the symbolic shape
            # pass is skipped: it fails on the image encoder's If subgraphs and quantize_dynamic does not need it.
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
            model = onnx.load(str(prepared))
            moved = scale_before_matmul(model) if attention else 0
            weights = {i.name for i in model.graph.initializer}
            weight_mm = [n.name for n in model.graph.node if n.op_type in WEIGHT_OPS and n.input[1] in weights]
            act_mm = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] not in weights]
            u8s8 = attention and config.attention_u8s8
            if u8s8:  # before quantize_dynamic, which then sees only the weight MatMuls
                act_mm = quantize_activation_matmuls(model, config.exclude)
            onnx.save(model, str(prepared))
            quantize_dynamic(str(prepared), str(out), op_types_to_quantize=list(WEIGHT_OPS),
                             per_channel=config.per_channel, reduce_range=config.reduce_range,
                             weight_type=QuantType.QInt8, nodes_to_exclude=list(config.exclude),
                             extra_options={"MatMulConstBOnly": not attention or u8s8})
            quantized = onnx.load(str(out))
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    ops = Counter(n.op_type for n in quantized.graph.node)
    excluded = set(config.exclude)
    details = {"quantized": True, "precision": "int8", "mode": "dynamic",
               "weights": "int8 per-channel" if config.per_channel else "int8 per-tensor",
               "activations": "uint8 per call", "reduce_range": config.reduce_range,
               "weight_matmuls": len([n for n in weight_mm if n not in excluded]),
               "attention_matmuls": len([n for n in act_mm if n not in excluded]) if attention else 0,
               "scales_moved_before_matmul": moved,
               "attention_operands": ("uint8 x int8 (VNNI)" if attention and config.attention_u8s8
                                      else "uint8 x uint8" if attention else None),
               "integer_ops": {op: ops[op] for op in INTEGER_OPS if ops[op]}, "excluded_nodes": sorted(excluded)}
    return quantized, details


def check_runs_on_cpu(model: onnx.ModelProto, name: str) -> None:
    """Load the quantized graph on ONNX Runtime's CPU provider; a graph it cannot run is refused."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises several pybind types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise Sam2rtError(f"ONNX Runtime's CPU provider cannot run the int8-cpu {name} ({first}); keep it FP32 "
                          f"(leave it out of --graphs) or report the model") from None


def convert_int8_cpu(model_dir: str | Path, out: str | Path, config: CpuInt8Config = CpuInt8Config(),
                     log: Callable[[str], None] = print) -> Path:
    """Write the int8-cpu variant of an FP32 model directory.

    Args:
        model_dir: the FP32 export (``sam2rt export``); other precisions and non-FP32 graphs are refused.
        out: output directory (a new one; written atomically).
        config: see :class:`CpuInt8Config`.

    Returns:
        the new manifest's path. Graphs in ``config.graphs`` are dynamically quantized, the others FP32 copies.
    """
    import onnxruntime

    config.check()
    source = load_fp32_source(model_dir, "int8-cpu conversion")
    check_cpu_source(source)
    check_out_dir(source, out)
    if source.raw.get("exporter", {}).get("attention", "cpu") != "cpu":
        log("int8-cpu: note: this export has memory attention in the TensorRT-fusable form (V projected before the "
            "weighted sum, 4x the multiply-adds of the largest product); for ONNX Runtime CPU export with "
            "`sam2rt export --attention cpu` and convert that")
    graphs: dict[str, onnx.ModelProto] = {}
    details: dict[str, Any] = {}
    for spec in C.GRAPHS:
        path = source.graph_path(spec.name)
        if spec.name not in config.graphs:
            graphs[spec.name] = onnx.load(str(path))
            details[spec.name] = {"quantized": False, "precision": "fp32"}
            continue
        log(f"int8-cpu: quantizing {spec.name} ...")
        graphs[spec.name], details[spec.name] = quantize_graph_cpu(path, spec.name, config)
        check_runs_on_cpu(graphs[spec.name], spec.name)
    return write_variant(source, out, PRECISION, graphs, {
        "tool": f"onnxruntime.quantization {onnxruntime.__version__} (quant_pre_process + quantize_dynamic: "
                "INT8 weights, uint8 activations quantized per call; for ONNX Runtime's CPU provider)",
        "graphs": details,
    })
