"""INT8 by explicit quantization: QDQ ONNX graphs from captured calibration inputs.

``calibrate_model`` samples clips from the calibration data, captures every graph's feeds while the FP32
model tracks them (cached), then quantizes the chosen graphs with ``onnxruntime.quantization`` static QDQ
in the form TensorRT's strongly typed networks take: INT8 QuantizeLinear/DequantizeLinear pairs,
symmetric (zero points 0) for activations and weights, weights per output channel, biases left in float.
Only the inputs of the compute ops (Conv, MatMul with a weight, Gemm) are quantized by default; softmax,
LayerNorm and the attention products stay in float. The attention products are excluded by name
(``activation_matmuls``): ONNX Runtime's QDQ quantizer ignores ``MatMulConstBOnly`` and would otherwise
put Q/DQ on Q·Kᵀ and softmax·V (and the softmax output).

In a strongly typed TensorRT network everything outside Q/DQ runs in the graph's own precision, so by
default (``fp16_base``) the QDQ graphs are then converted to FP16 (``fp16.qdq_to_fp16``: FP16 scales, the
FP16 variant's FP32 block list) and the graphs not chosen for INT8 (by default the mask decoder, see
``DEFAULT_GRAPHS``) are the FP16 variant's graphs: LayerNorm, softmax, GELU and the residual adds run in
FP16, not FP32. ``fp16_base=False`` keeps the FP32 graphs (FP32 copies of the graphs not chosen).
The same QDQ graphs run on ONNX Runtime CPU, so their accuracy is measurable anywhere.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import logging
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import onnx

from sam2rt import contract as C
from sam2rt.calibration.capture import CaptureSettings, Feeds, captured_samples
from sam2rt.calibration.fp16 import qdq_to_fp16
from sam2rt.calibration.sampling import describe, find_sources, plan_clips
from sam2rt.calibration.variant import check_out_dir, load_fp32_source, write_variant
from sam2rt.errors import Sam2rtError

METHODS = ("minmax", "entropy", "percentile")
# Chosen by measurement (SAM 2.1 tiny, 512 px, seeded random weights, 48 frames of three videos and two
# images, verified against the official predictor on bedroom_frames): the encoder, memory attention and
# memory encoder in INT8 with percentile ranges keep mean mask IoU 0.973; an INT8 mask decoder drops it
# below 0.97 (0.958-0.961 with all four graphs), so the decoder -- a small share of a frame's compute --
# stays FP32 unless asked for. See the precision table in README.
DEFAULT_GRAPHS = ("image_encoder", "memory_attention", "memory_encoder")
DEFAULT_METHOD = "percentile"
DEFAULT_OP_TYPES = ("Conv", "ConvTranspose", "MatMul", "Gemm")
# The decoder's token-only heads (hypernetwork MLPs, IoU / object-score / pointer heads) cost nothing in
# float and carry its outputs; "/MatMul" is the random-Fourier encoding of the prompt coordinates; the
# mask-prompt convs only run on refinement clicks, which the captured runs never exercise (no ranges).
DEFAULT_EXCLUDE: tuple[str, ...] = (
    "mask_decoder:/MatMul", "mask_decoder:/mask_downscaling/*", "mask_decoder:/output_hypernetworks_mlps*",
    "mask_decoder:/iou_prediction_head/*", "mask_decoder:/pred_obj_score_head/*", "mask_decoder:/obj_ptr_proj/*",
)


@dataclass(frozen=True)
class CalibrationConfig:
    """One ``sam2rt calibrate`` run; the CLI flags map onto these fields.

    frames: calibration frames in all (clips of ``clip_len`` consecutive frames, round-robin over sources).
    method: activation range calibration: "percentile" (the ``percentile`` of |x|, default), "minmax" or
        "entropy" (KL divergence).
    graphs: graphs to quantize; the others are the FP16 graphs (``fp16_base``) or FP32 copies.
    op_types: ONNX op types whose inputs get Q/DQ; ``weight_matmul_only`` leaves activation-by-activation
        MatMuls (attention scores and their weighted sums) in float (excluded by name, see module).
    fp16_base: Q/DQ on the FP16 graph (FP16 scales) and the FP16 graphs for those not quantized; off: FP32.
    exclude: node-name patterns kept in float: "GLOB" for every graph or "GRAPH:GLOB" for one (fnmatch,
        e.g. "mask_decoder:/output_upscaling*").
    objects: prompted objects per clip while capturing; max_samples: captured feeds kept per graph.
    """

    frames: int = 48
    clip_len: int = 8
    method: str = DEFAULT_METHOD
    graphs: tuple[str, ...] = DEFAULT_GRAPHS
    op_types: tuple[str, ...] = DEFAULT_OP_TYPES
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    weight_matmul_only: bool = True
    fp16_base: bool = True
    percentile: float = 99.999
    objects: int = 2
    max_samples: int = 64
    seed: int = 0
    cache_dir: Path | None = None
    use_cache: bool = True
    progress: bool = True

    def check(self) -> None:
        """Raise Sam2rtError for a setting that cannot work, saying what would."""
        if self.method not in METHODS:
            raise Sam2rtError(f"unknown calibration method {self.method!r}; choose one of {', '.join(METHODS)}")
        unknown = [g for g in self.graphs if g not in C.GRAPHS_BY_NAME]
        if unknown:
            raise Sam2rtError(f"unknown graph(s) {', '.join(unknown)}; choose from "
                              f"{', '.join(C.GRAPHS_BY_NAME)} (or none, for an FP32 copy)")
        if not 0.0 < self.percentile <= 100.0:
            raise Sam2rtError(f"percentile must be in (0, 100], e.g. 99.999; got {self.percentile}")
        for name, value in (("frames", self.frames), ("clip length", self.clip_len), ("objects", self.objects),
                            ("max samples", self.max_samples)):
            if type(value) is not int or value < 1:
                raise Sam2rtError(f"{name} must be a positive integer, got {value!r}")


class _Reader:
    """``onnxruntime.quantization.CalibrationDataReader`` over a list of captured feeds.

    ``set_range`` lets the calibrator take one run at a time ("CalibStridedMinMax" 1): ORT's histogram
    collectors stack a batch's outputs into one array, which fails when runs differ in shape (B objects,
    N points, M slots differ from run to run); one run per batch always stacks.
    """

    def __init__(self, feeds: Sequence[Feeds], progress: Callable[[], None]) -> None:
        self._feeds = feeds
        self._next, self._end = 0, len(feeds)
        self._progress = progress

    def __len__(self) -> int:
        return len(self._feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next, self._end = start_index, min(end_index, len(self._feeds))

    def get_next(self) -> Feeds | None:
        if self._next >= self._end:
            return None
        self._next += 1
        self._progress()
        return self._feeds[self._next - 1]

    def rewind(self) -> None:
        self._next, self._end = 0, len(self._feeds)


def activation_matmuls(model: onnx.ModelProto) -> list[str]:
    """Names of the MatMuls whose two operands are both computed from graph inputs (attention's Q·Kᵀ and
    softmax·V): neither is an initializer, a Constant, or computed from those alone (e.g. a transposed or
    dequantized weight)."""
    g = model.graph
    const = {i.name for i in g.initializer}
    for node in g.node:  # topologically sorted: one pass propagates constness
        if node.op_type == "Constant" or (node.input and all(i in const for i in node.input if i)):
            const.update(node.output)
    return [n.name for n in g.node if n.op_type == "MatMul" and not any(i in const for i in n.input)]


def excluded_nodes(model: onnx.ModelProto, graph: str, patterns: Sequence[str]) -> list[str]:
    """Names of the nodes matching a pattern: ``"GLOB"`` (any graph) or ``"GRAPH:GLOB"`` (that graph only)."""
    globs = [p.split(":", 1)[1] if ":" in p else p for p in patterns if ":" not in p or p.split(":", 1)[0] == graph]
    return [n.name for n in model.graph.node if any(fnmatch.fnmatchcase(n.name, g) for g in globs)]


def quantize_graph(fp32_path: Path, feeds: Sequence[Feeds], config: CalibrationConfig,
                   progress: Callable[[], None] = lambda: None) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Static QDQ INT8 quantization of one FP32 graph, calibrated on ``feeds``.

    Args:
        fp32_path: the FP32 ONNX file (contract inputs/outputs, which the QDQ graph keeps).
        feeds: captured inputs, one dict per run, as the contract declares them.
        config: method, op types, exclusions.
        progress: called once per calibration run (a progress bar's update).

    Returns:
        (the QDQ model, details: method, quantized op types, excluded nodes, Q/DQ counts, samples).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if not feeds:
        raise Sam2rtError(f"no calibration inputs were captured for {fp32_path.stem}; pass more calibration data")
    source = onnx.load(str(fp32_path), load_external_data=False)
    exclude = excluded_nodes(source, fp32_path.stem, config.exclude)
    attention = activation_matmuls(source) if config.weight_matmul_only else []
    exclude += [n for n in attention if n not in exclude]
    del source
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[config.method]
    extra = {
        "ActivationSymmetric": True,  # zero point 0: what TensorRT's INT8 Q/DQ takes
        "WeightSymmetric": True,
        "QuantizeBias": False,  # TensorRT fuses float biases; it has no INT32 bias dequantization
        "MatMulConstBOnly": config.weight_matmul_only,  # ignored by the QDQ quantizer: see activation_matmuls
        # Q/DQ on the inputs of the compute ops only, as TensorRT places them: quantizing their outputs too
        # would round the float residual adds, softmaxes and LayerNorms they feed (measured: larger error).
        "OpTypesToExcludeOutputQuantization": list(config.op_types),
        "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},  # (K, N) weights: one scale per output column
        "CalibPercentile": config.percentile,
        "CalibStridedMinMax": 1,  # one run per calibrator batch (see _Reader); every method accumulates
    }
    # Its per-run INFO lines and the root-logger advice to pre-process drown the progress bars.
    loggers = [logging.getLogger("onnxruntime.quantization"), logging.getLogger()]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        # ORT's histogram calibrators also print a line per batch; keep stdout for our own report.
        with tempfile.TemporaryDirectory(prefix="sam2rt-int8-") as tmp, contextlib.redirect_stdout(io.StringIO()):
            out = Path(tmp) / fp32_path.name
            quantize_static(str(fp32_path), str(out), _Reader(feeds, progress), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(config.op_types), per_channel=True, reduce_range=False,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=exclude, calibrate_method=method, extra_options=extra)
            model = onnx.load(str(out))
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    ops = Counter(n.op_type for n in model.graph.node)
    kept = [n.name for n in model.graph.node
            if n.name in set(exclude) and n.name not in set(attention) and n.op_type in config.op_types]
    details = {"quantized": True, "method": config.method, "op_types": list(config.op_types),
               "weight_matmul_only": config.weight_matmul_only, "excluded_nodes": kept,
               "activation_matmuls_in_float": len(attention),
               "quantize_linear": ops["QuantizeLinear"], "dequantize_linear": ops["DequantizeLinear"],
               "samples": len(feeds)}
    if config.method == "percentile":
        details["percentile"] = config.percentile
    return model, details


def calibrate_model(model_dir: str | Path, data: Sequence[str | Path], out: str | Path,
                    config: CalibrationConfig = CalibrationConfig(),
                    log: Callable[[str], None] = print) -> Path:
    """Write an INT8 (QDQ) variant of an FP32 model directory, calibrated on ``data``.

    Args:
        model_dir: the FP32 export (``sam2rt export``); other precisions are refused.
        data: video files, JPEG frame folders, images or folders of them.
        out: output directory (a new one; written atomically).
        config: see :class:`CalibrationConfig`.

    Returns:
        the new manifest's path. Graphs in ``config.graphs`` are QDQ INT8, the others FP32 copies.
    """
    from tqdm import tqdm

    config.check()
    source = load_fp32_source(model_dir, "INT8 calibration")
    clips = plan_clips(find_sources(data), config.frames, config.clip_len)
    check_out_dir(source, out)  # after the checks of the data (which create nothing), before the long work
    log(f"calibration frames: {describe(clips)}")
    settings = CaptureSettings(objects=config.objects, seed=config.seed, max_samples=config.max_samples)
    samples = captured_samples(source, clips, settings, cache_dir=config.cache_dir, use_cache=config.use_cache,
                               progress=config.progress, log=log)
    graphs: dict[str, onnx.ModelProto] = {}
    details: dict[str, Any] = {}
    for spec in C.GRAPHS:
        path = source.graph_path(spec.name)
        if spec.name not in config.graphs:
            graphs[spec.name] = onnx.load(str(path))
            details[spec.name] = {"quantized": False, "precision": "fp32"}
        else:
            feeds = samples[spec.name]
            with tqdm(total=len(feeds), desc=f"calibrate {spec.name}", unit="run", disable=not config.progress) as bar:
                graphs[spec.name], details[spec.name] = quantize_graph(path, feeds, config, progress=bar.update)
        if config.fp16_base:
            graphs[spec.name], details[spec.name]["fp16"] = qdq_to_fp16(graphs[spec.name])
            if not details[spec.name]["quantized"]:
                details[spec.name]["precision"] = "fp16"
    settings_record = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()
                       if k not in ("cache_dir", "use_cache", "progress")}
    import onnxruntime

    return write_variant(source, out, "int8", graphs, {
        "tool": f"onnxruntime.quantization {onnxruntime.__version__} (static QDQ, symmetric INT8, "
                "per-channel weights, float bias)" + (", then onnxconverter-common FP16" if config.fp16_base else ""),
        "calibration": {**settings_record, "clips": [c.key() | {"kind": c.source.kind} for c in clips]},
        "graphs": details,
    })
