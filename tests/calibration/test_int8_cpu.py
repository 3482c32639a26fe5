"""int8-cpu variant (`sam2rt convert --precision int8-cpu`): which graphs are quantized and how, what it
refuses, and tracking close to the official predictor (sam2.1 tiny @256, seeded random weights)."""

from __future__ import annotations

import json

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sam2rt import contract as C
from sam2rt.cli import main
from sam2rt.errors import Sam2rtError
from sam2rt.manifest import load_manifest, sha256_file

pytest.importorskip("onnxruntime.quantization")
FRAMES = 6


@pytest.fixture(scope="module")
def int8cpu_dir(exported_tiny_256: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sam2rt.calibration.int8_cpu import convert_int8_cpu

    out = tmp_path_factory.mktemp("tiny256_int8cpu")
    convert_int8_cpu(exported_tiny_256, out, log=lambda _: None)
    return out


def _ops(path: Path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def test_graph_choices_and_contract(int8cpu_dir: Path, exported_tiny_256: Path) -> None:
    m = load_manifest(int8cpu_dir)
    assert m.precision == "int8-cpu"
    assert m.raw["source"] == load_manifest(exported_tiny_256).raw["source"]  # same weights: verify can use them
    graphs = m.raw["conversion"]["graphs"]
    for name in ("image_encoder", "memory_attention", "memory_encoder"):
        ops = _ops(m.graph_path(name))
        # dynamic quantization for ORT's CPU kernels: integer MatMuls, no TensorRT-style Q/DQ pairs; weights by
        # quantize_dynamic (MatMulInteger), attention products as uint8 x int8 (MatMulIntegerToFloat, VNNI)
        assert ops["MatMulInteger"] == graphs[name]["weight_matmuls"] > 0, name
        assert ops["MatMulIntegerToFloat"] == ops["QuantizeLinear"] == graphs[name]["attention_matmuls"], name
        assert ops["DynamicQuantizeLinear"] > 0 and not ops["DequantizeLinear"] and not ops["MatMul"], name
        assert ops["Conv"] == _ops(exported_tiny_256 / f"{name}.onnx")["Conv"], name  # ConvInteger measured slower
        assert not ops["ConvInteger"], name
    # attention products quantized in the image encoder and memory attention (the memory encoder has none),
    # memory attention's with their scale moved onto the queries
    attention = graphs["memory_attention"]
    assert attention["attention_matmuls"] > 0
    # the 1/sqrt(d) scale is on the queries (the export puts it there; scale_before_matmul moves it otherwise):
    # no scalar Div/Mul reads an integer attention product
    model = onnx.load(str(m.graph_path("memory_attention")))
    products = {n.output[0] for n in model.graph.node if n.op_type == "MatMulIntegerToFloat"}
    assert not [n.name for n in model.graph.node if n.op_type in ("Div", "Mul") and n.input[0] in products]
    assert attention["attention_operands"] == graphs["image_encoder"]["attention_operands"] == "uint8 x int8 (VNNI)"
    assert graphs["image_encoder"]["attention_matmuls"] > 0 and graphs["memory_encoder"]["attention_matmuls"] == 0
    # the mask decoder stays FP32, byte for byte
    assert graphs["mask_decoder"] == {"quantized": False, "precision": "fp32"}
    assert sha256_file(m.graph_path("mask_decoder")) == sha256_file(exported_tiny_256 / "mask_decoder.onnx")
    for spec in C.GRAPHS:  # FP32 contract at the boundary: every runtime path takes the variant
        model = onnx.load(str(m.graph_path(spec.name)))
        assert [i.name for i in model.graph.input] == spec.input_names
        assert [o.name for o in model.graph.output] == spec.output_names
        assert [helper.tensor_dtype_to_np_dtype(o.type.tensor_type.elem_type) for o in model.graph.output] == \
            [np.dtype(t.dtype) for t in spec.outputs]  # float32 (and the decoder's int32 index) as the contract says


def test_scale_moved_before_matmul_is_exact() -> None:
    from sam2rt.calibration.int8_cpu import scale_before_matmul

    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((2, 5, 8), np.float32), rng.standard_normal((2, 8, 7), np.float32)
    s = numpy_helper.from_array(np.array(2.8284271, np.float32), "s")
    nodes = [helper.make_node("MatMul", ["q", "k"], ["qk"], name="qk"),
             helper.make_node("Div", ["qk", "s"], ["logits"], name="scale"),
             helper.make_node("MatMul", ["q", "k"], ["qk2"], name="shared"),  # two consumers: left alone
             helper.make_node("Div", ["qk2", "s"], ["out2"]), helper.make_node("Relu", ["qk2"], ["out3"])]
    f = lambda n, shape: helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)  # noqa: E731
    graph = helper.make_graph(nodes, "g", [f("q", [2, 5, 8]), f("k", [2, 8, 7])],
                              [f("logits", [2, 5, 7]), f("out2", [2, 5, 7]), f("out3", [2, 5, 7])], [s])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert scale_before_matmul(model) == 1
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert ops[:2] == ["Div", "MatMul"]  # the scale now feeds the first MatMul, in topological order
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    logits, out2, out3 = sess.run(None, {"q": q, "k": k})
    np.testing.assert_allclose(logits, (q @ k) / 2.8284271, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out2, (q @ k) / 2.8284271, rtol=1e-5, atol=1e-6)


def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_refuses_what_ort_cpu_int8_cannot_start_from(int8cpu_dir: Path, exported_tiny_256: Path,
                                                      tmp_path: Path, capsys) -> None:
    from sam2rt.calibration.int8_cpu import CpuInt8Config, convert_int8_cpu

    # a converted directory (no double quantization)
    with pytest.raises(Sam2rtError, match="holds int8-cpu graphs"):
        convert_int8_cpu(int8cpu_dir, tmp_path / "a", log=lambda _: None)
    # a manifest that claims FP32 over FP16 weights
    bad = _copy_model(exported_tiny_256, tmp_path / "fp16_inside")
    model = onnx.load(str(bad / "memory_encoder.onnx"))
    init = model.graph.initializer[0]
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    onnx.save(model, str(bad / "memory_encoder.onnx"))
    raw = json.loads((bad / "manifest.json").read_text())  # a consistent folder: only the weights' type is wrong
    raw["graphs"]["memory_encoder"]["sha256"] = sha256_file(bad / "memory_encoder.onnx")
    (bad / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(Sam2rtError, match="FLOAT16 weights; int8-cpu needs FP32 graphs"):
        convert_int8_cpu(bad, tmp_path / "b", log=lambda _: None)
    # TensorRT engines without their ONNX graphs (GPU-only): nothing ONNX Runtime could quantize
    gpu_only = _copy_model(exported_tiny_256, tmp_path / "engines_only")
    (gpu_only / "image_encoder.onnx").unlink()
    with pytest.raises(Sam2rtError, match="image_encoder.onnx is missing; export a model first"):
        convert_int8_cpu(gpu_only, tmp_path / "c", log=lambda _: None)
    with pytest.raises(Sam2rtError, match="unknown graph"):
        convert_int8_cpu(exported_tiny_256, tmp_path / "d", CpuInt8Config(graphs=("decoder",)), log=lambda _: None)
    assert not any((tmp_path / x).exists() for x in "abcd")  # refused before writing anything
    # TensorRT cannot parse the dynamic-quantization ops: `sam2rt build` refuses the variant up front
    from sam2rt.engines.config import BuildConfig
    from sam2rt.engines.model_engines import build_model_engines

    with pytest.raises(Sam2rtError, match="int8-cpu variant, made for ONNX Runtime's CPU provider"):
        build_model_engines(int8cpu_dir, tmp_path / "engines", BuildConfig(), build_fn=lambda *a: b"")
    # the CLI prints one line and exits 2
    assert main(["convert", str(int8cpu_dir), "--precision", "int8-cpu", "--out", str(tmp_path / "e")]) == 2
    assert "starts from the FP32 export" in capsys.readouterr().err
    assert main(["convert", str(exported_tiny_256), "--precision", "int8-cpu", "--fp16-rope", "--out",
                 str(tmp_path / "f")]) == 2
    assert "--fp16-rope only apply to --precision fp16" in capsys.readouterr().err
    assert not (tmp_path / "e").exists() and not (tmp_path / "f").exists()


def test_int8_cpu_tracks_like_the_official_predictor(int8cpu_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import torch

    from sam2rt.benchmarks.parity import compare, official_predictor, run_steps
    from sam2rt.runtime.predictor import VideoPredictor

    for i in range(FRAMES):
        shutil.copy(shared_data / "videos" / "bedroom_frames" / f"{i:05d}.jpg", tmp_path / f"{i:05d}.jpg")
    steps = [("points", 0, 1, {"points": [[420, 260], [640, 300]], "labels": [1, 0]}),
             ("points", 0, 2, {"box": [120, 100, 330, 420]}), ("propagate", {})]
    reference = official_predictor(load_manifest(int8cpu_dir), None, 0)
    ours = VideoPredictor(int8cpu_dir, threads=1, fill_hole_area=0, progress=False)
    report = compare(run_steps(reference, str(tmp_path), steps, frame_hook=torch.inference_mode),
                     run_steps(ours, str(tmp_path), steps))
    assert len(report.rows) == 1 + 2 + 2 * FRAMES
    assert report.mean_iou_both_present >= 0.97 and report.presence_disagreements == 0, report.summary()
    assert report.max_logit_diff > 1e-3  # it really ran quantized graphs: not FP32 parity


def test_verify_threshold_for_int8_cpu() -> None:
    from sam2rt.benchmarks.bench import IOU_SANITY_BY_PRECISION
    from sam2rt.calibration.variant import PRECISIONS
    from sam2rt.cli.verify import THRESHOLDS

    assert set(THRESHOLDS) == set(PRECISIONS)  # every precision sam2rt makes has its verify bar
    assert THRESHOLDS["int8-cpu"] == IOU_SANITY_BY_PRECISION["int8-cpu"] == 0.97
