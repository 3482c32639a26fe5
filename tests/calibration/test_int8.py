"""sam2rt.calibration.int8 and ``sam2rt calibrate``: QDQ INT8 graphs that the runtime tracks with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from sam2rt import contract as C
from sam2rt.calibration.capture import CaptureSettings, captured_samples
from sam2rt.calibration.fp16 import SCORE_HEAD_PREFIX
from sam2rt.calibration.int8 import CalibrationConfig, calibrate_model
from sam2rt.calibration.sampling import find_sources, plan_clips
from sam2rt.cli import main
from sam2rt.errors import Sam2rtError
from sam2rt.manifest import load_manifest

pytest.importorskip("onnxruntime.quantization")
SMALL = dict(frames=5, clip_len=4, max_samples=8)  # a 4-frame clip and one image: seconds at 256 px


def _data(shared_data: Path) -> list[Path]:
    return [shared_data / "videos" / "cups.mp4", shared_data / "images" / "truck.jpg"]


@pytest.fixture(scope="module")
def int8_256(exported_tiny_256: Path, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 256-px tiny export, all four graphs INT8 (default method), calibrated on 5 frames."""
    root = tmp_path_factory.mktemp("int8")
    cfg = CalibrationConfig(graphs=tuple(s.name for s in C.GRAPHS), cache_dir=root / "cache", progress=False,
                            **SMALL)
    return calibrate_model(exported_tiny_256, _data(shared_data), root / "model", cfg).parent


def _zero_points(model: onnx.ModelProto) -> list[np.ndarray]:
    inits = {i.name: i for i in model.graph.initializer}
    return [numpy_helper.to_array(inits[n.input[2]]) for n in model.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2] in inits]


def test_graphs_are_symmetric_int8_qdq(int8_256: Path) -> None:
    manifest = load_manifest(int8_256)
    assert manifest.precision == "int8"
    for spec in C.GRAPHS:
        model = onnx.load(str(manifest.graph_path(spec.name)))
        ops = {n.op_type for n in model.graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops, spec.name
        zps = _zero_points(model)
        assert zps and all(z.dtype == np.int8 and not z.any() for z in zps), spec.name
        assert [i.name for i in model.graph.input] == spec.input_names  # the contract is unchanged
        details = manifest.raw["conversion"]["graphs"][spec.name]
        assert details["quantized"] and details["method"] == "percentile" and details["samples"] >= 1


def test_int8_graphs_pass_the_trt_lint(int8_256: Path) -> None:
    """QDQ graphs: symmetric zero points, INT8 only through Q/DQ, every op in TensorRT 10.3's matrix."""
    from sam2rt.engines.lint import lint_model_dir

    assert lint_model_dir(int8_256) == []


def test_int8_tracks_like_fp32(exported_tiny_256: Path, int8_256: Path, shared_data: Path) -> None:
    from sam2rt.runtime.predictor import VideoPredictor

    frames = str(shared_data / "videos" / "bedroom_frames")
    masks = {}
    for name, model in (("fp32", exported_tiny_256), ("int8", int8_256)):
        predictor = VideoPredictor(model, progress=False)
        state = predictor.init_state(frames)
        predictor.add_new_points_or_box(state, 0, 1, points=[[420, 260]], labels=[1])
        predictor.add_new_points_or_box(state, 0, 2, box=[120, 100, 330, 420])
        masks[name] = [m > 0 for _, _, m in predictor.propagate_in_video(state, max_frame_num_to_track=5)]
    ious = [(a & b).sum() / max((a | b).sum(), 1) for fa, fb in zip(masks["fp32"], masks["int8"])
            for a, b in zip(fa, fb)]
    assert len(ious) == 12 and np.mean(ious) >= 0.9, ious


def test_capture_cache_is_reused(exported_tiny_256: Path, int8_256: Path, shared_data: Path) -> None:
    manifest = load_manifest(exported_tiny_256)
    clips = plan_clips(find_sources(_data(shared_data)), SMALL["frames"], SMALL["clip_len"])
    lines: list[str] = []
    samples = captured_samples(manifest, clips, CaptureSettings(max_samples=SMALL["max_samples"]),
                               cache_dir=int8_256.parent / "cache", log=lines.append)
    assert len(lines) == 1 and lines[0].startswith("calibration inputs: cached ") and " to " not in lines[0]
    assert {len(v) for v in samples.values()} and all(1 <= len(v) <= SMALL["max_samples"] for v in samples.values())
    memory = max(samples["memory_attention"], key=lambda f: f["memory"].shape[0])
    assert memory["memory"].shape[0] > 1 and memory["memory_valid"].sum() > 1  # a real, filling bank


def test_rejects_a_converted_source(int8_256: Path, shared_data: Path, tmp_path: Path) -> None:
    with pytest.raises(Sam2rtError, match="holds int8 graphs; INT8 calibration starts from the FP32"):
        calibrate_model(int8_256, _data(shared_data), tmp_path / "out", CalibrationConfig(progress=False, **SMALL))
    assert not (tmp_path / "out").exists()


def test_no_frames_and_bad_method_write_nothing(exported_tiny_256: Path, tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    with pytest.raises(Sam2rtError, match="yields no frames"):
        calibrate_model(exported_tiny_256, [empty], out, CalibrationConfig(progress=False, **SMALL))
    assert not out.exists()
    rc = main(["calibrate", str(exported_tiny_256), "--data", str(empty), "--out", str(tmp_path / "o2"),
               "--method", "kl"])
    assert rc == 2 and "unknown calibration method 'kl'; choose one of minmax, entropy, percentile" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()
    with pytest.raises(Sam2rtError, match="unknown graph"):
        CalibrationConfig(graphs=("decoder",)).check()


def test_manifest_records_the_settings(int8_256: Path) -> None:
    conversion = json.loads((int8_256 / C.MANIFEST_NAME).read_text())["conversion"]
    assert conversion["from_precision"] == "fp32" and "onnxruntime.quantization" in conversion["tool"]
    cal = conversion["calibration"]
    assert cal["frames"] == 5 and cal["method"] == "percentile" and len(cal["clips"]) == 2


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_histogram_methods_take_runs_of_different_shapes(exported_tiny_256: Path, int8_256: Path,
                                                         shared_data: Path, method: str) -> None:
    from sam2rt.calibration.int8 import quantize_graph

    manifest = load_manifest(exported_tiny_256)
    clips = plan_clips(find_sources(_data(shared_data)), SMALL["frames"], SMALL["clip_len"])
    samples = captured_samples(manifest, clips, CaptureSettings(max_samples=SMALL["max_samples"]),
                               cache_dir=int8_256.parent / "cache", log=lambda _: None)
    feeds = samples["memory_encoder"]
    assert len({f["mask_logits"].shape[0] for f in feeds}) > 1  # B = 1 on prompts, 2 while tracking
    model, details = quantize_graph(manifest.graph_path("memory_encoder"), feeds,
                                    CalibrationConfig(method=method, percentile=99.9))
    assert details["method"] == method and details["quantize_linear"] > 0
    assert all(not z.any() for z in _zero_points(model))


def _matmuls_with_dq(model: onnx.ModelProto, names: list[str]) -> list[str]:
    """Of the MatMuls ``names``, those with an operand straight from a DequantizeLinear (quantized)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    return [n.name for n in model.graph.node if n.name in set(names)
            and any(i in producer and producer[i].op_type == "DequantizeLinear" for i in n.input)]


def test_attention_products_carry_no_qdq(int8_256: Path) -> None:
    """Q·Kᵀ and softmax·V stay in float (ORT's quantizer ignores MatMulConstBOnly); weight MatMuls are INT8."""
    from sam2rt.calibration.int8 import activation_matmuls

    manifest = load_manifest(int8_256)
    for spec in C.GRAPHS:
        model = onnx.load(str(manifest.graph_path(spec.name)))
        attention = activation_matmuls(model)
        weights = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name not in set(attention)]
        if spec.name != "memory_encoder":  # the three graphs with attention
            assert len(attention) >= 2, spec.name
            assert manifest.raw["conversion"]["graphs"][spec.name]["activation_matmuls_in_float"] == len(attention)
        assert _matmuls_with_dq(model, attention) == [], spec.name
        if spec.name in ("image_encoder", "memory_attention"):
            assert _matmuls_with_dq(model, weights), spec.name  # the weight MatMuls are quantized


def test_attention_products_quantized_when_asked(exported_tiny_256: Path, int8_256: Path, shared_data: Path) -> None:
    from sam2rt.calibration.int8 import activation_matmuls, quantize_graph

    manifest = load_manifest(exported_tiny_256)
    clips = plan_clips(find_sources(_data(shared_data)), SMALL["frames"], SMALL["clip_len"])
    samples = captured_samples(manifest, clips, CaptureSettings(max_samples=SMALL["max_samples"]),
                               cache_dir=int8_256.parent / "cache", log=lambda _: None)
    cfg = CalibrationConfig(weight_matmul_only=False, progress=False, **SMALL)
    model, details = quantize_graph(manifest.graph_path("memory_attention"), samples["memory_attention"][:2], cfg)
    attention = activation_matmuls(onnx.load(str(manifest.graph_path("memory_attention"))))
    assert details["activation_matmuls_in_float"] == 0
    assert sorted(_matmuls_with_dq(model, attention)) == sorted(attention)
    # the attention-form lint, 0 on the default INT8 graphs, sees the Q/DQ between Softmax and softmax·V
    from sam2rt.engines.lint import lint_model

    findings = [v for v in lint_model(model, "memory_attention") if v.rule == "attention-form"]
    softmaxes = sum(n.op_type == "Softmax" for n in model.graph.node)
    assert softmaxes > 0 and len(findings) == softmaxes, [v.message for v in findings]


def test_qdq_sits_on_fp16_graphs(int8_256: Path) -> None:
    """FP16 base: Q/DQ scales are FP16 (opset 19), the decoder is the FP16 graph, inputs/outputs stay FP32."""
    manifest = load_manifest(int8_256)
    graphs = manifest.raw["conversion"]["graphs"]
    for spec in C.GRAPHS:
        model = onnx.load(str(manifest.graph_path(spec.name)))
        inits = {i.name: i for i in model.graph.initializer}
        scales = [inits[n.input[1]].data_type for n in model.graph.node
                  if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[1] in inits]
        assert scales and set(scales) == {TensorProto.FLOAT16}, spec.name
        assert next(i.version for i in model.opset_import if i.domain in ("", "ai.onnx")) == 19
        assert {i.type.tensor_type.elem_type for i in model.graph.input} <= {TensorProto.FLOAT, TensorProto.INT32,
                                                                            TensorProto.BOOL}
        assert "fp16" in graphs[spec.name] and graphs[spec.name]["fp16"]["compute_nodes"] > 0


def test_graphs_not_quantized_are_the_fp16_graphs(exported_tiny_256: Path, int8_256: Path, shared_data: Path,
                                                  tmp_path: Path) -> None:
    cfg = CalibrationConfig(graphs=("memory_encoder",), cache_dir=int8_256.parent / "cache", progress=False, **SMALL)
    manifest = load_manifest(calibrate_model(exported_tiny_256, _data(shared_data), tmp_path / "m", cfg).parent)
    graphs = manifest.raw["conversion"]["graphs"]
    decoder = onnx.load(str(manifest.graph_path("mask_decoder")))
    assert graphs["mask_decoder"]["precision"] == "fp16" and not graphs["mask_decoder"]["quantized"]
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in decoder.graph.node)
    assert any(i.data_type == TensorProto.FLOAT16 for i in decoder.graph.initializer)
    # its object-score head stays FP32 (fp16.Fp16Config.score_head_fp32): FP32 weights, FP32 Gemms
    weights = {i.name: i.data_type for i in decoder.graph.initializer}
    head = [n for n in decoder.graph.node if n.name.startswith(SCORE_HEAD_PREFIX) and n.op_type == "Gemm"]
    assert len(head) == 3 and {weights[n.input[1]] for n in head} == {TensorProto.FLOAT}
    assert graphs["mask_decoder"]["fp16"]["score_head_fp32"]
