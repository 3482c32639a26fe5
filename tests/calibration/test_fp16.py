"""FP16 variant (`sam2rt convert --precision fp16`): FP32 islands where they belong, same contract, and
tracking close to the official predictor (sam2.1 tiny @256, seeded random weights), with FP16 attention."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from sam2rt import contract as C
from sam2rt.cli import main
from sam2rt.errors import Sam2rtError
from sam2rt.manifest import load_manifest

FRAMES = 6


@pytest.fixture(scope="module")
def fp16_dir(exported_tiny_256: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sam2rt.calibration.fp16 import convert_model

    out = tmp_path_factory.mktemp("tiny256_fp16")
    convert_model(exported_tiny_256, out, log=lambda _: None)
    return out


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in graph.node for o in n.output}


def test_manifest_records_precision_and_keeps_contract(fp16_dir: Path, exported_tiny_256: Path) -> None:
    m = load_manifest(fp16_dir)
    assert m.precision == "fp16"
    assert m.raw["source"] == load_manifest(exported_tiny_256).raw["source"]  # same weights: verify can use them
    assert {g["precision"] for g in m.raw["conversion"]["graphs"].values()} == {"fp16"}
    for spec in C.GRAPHS:
        model = onnx.load(str(m.graph_path(spec.name)))
        io = {v.name: v.type.tensor_type.elem_type for v in list(model.graph.input) + list(model.graph.output)}
        want = {t.name: onnx.helper.np_dtype_to_tensor_dtype(np.dtype(t.dtype)) for t in spec.inputs + spec.outputs}
        assert io == want, spec.name
        half = [i for i in model.graph.initializer if i.data_type == TensorProto.FLOAT16]
        assert sum(int(np.prod(i.dims)) for i in half) > 0.9 * sum(int(np.prod(i.dims)) for i in model.graph.initializer
                                                                    if i.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16))


def _attention_types(model_path: Path) -> tuple[set[int], set[int], set[int]]:
    """Element types of (Softmax inputs, Q·Kᵀ MatMul inputs, LayerNormalization inputs) in memory attention."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(model_path)))
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    producers = _producers(model.graph)
    softmaxes = [n for n in model.graph.node if n.op_type == "Softmax"]
    norms = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    assert softmaxes and norms
    qk = set()
    for softmax in softmaxes:  # back from each Softmax along its data path to Q·Kᵀ
        node = producers[softmax.input[0]]
        while node.op_type != "MatMul":
            node = producers[node.input[0]]
        qk |= {types.get(i) for i in node.input}
    return {types[n.input[0]] for n in softmaxes}, qk, {types[n.input[0]] for n in norms}


def test_attention_is_fp16_by_default_and_layernorm_stays_fp32(fp16_dir: Path, exported_tiny_256: Path,
                                                                tmp_path: Path) -> None:
    """Default: Q·Kᵀ -> scale -> mask -> Softmax all FP16 (TensorRT fuses attention only within one precision);
    ``attention_fp32`` keeps the whole chain FP32. LayerNorm is FP32 either way."""
    from sam2rt.calibration.fp16 import Fp16Config, convert_model

    softmax, qk, norm = _attention_types(fp16_dir / "memory_attention.onnx")
    assert softmax == {TensorProto.FLOAT16} and qk == {TensorProto.FLOAT16} and norm == {TensorProto.FLOAT}
    convert_model(exported_tiny_256, tmp_path / "fp32_attention", Fp16Config(attention_fp32=True,
                                                                               graphs=("memory_attention",)),
                  log=lambda _: None)
    softmax, qk, norm = _attention_types(tmp_path / "fp32_attention" / "memory_attention.onnx")
    assert softmax == {TensorProto.FLOAT} and qk == {TensorProto.FLOAT} and norm == {TensorProto.FLOAT}


def test_rope_rotations_use_fp32_tables(fp16_dir: Path, exported_tiny_256: Path) -> None:
    from sam2rt.calibration.fp16 import rope_nodes

    source = onnx.load(str(exported_tiny_256 / "memory_attention.onnx"))
    names = rope_nodes(source.graph)
    # 4 layers x (self q, self k, cross q, cross k frames) x (4 Muls + Sub + Add), at least
    assert len([n for n in source.graph.node if n.name in names and n.op_type == "Mul"]) >= 4 * 4 * 4
    converted = onnx.load(str(fp16_dir / "memory_attention.onnx"))
    tables = {i.name: i.data_type for i in converted.graph.initializer if i.name.endswith(("_cos", "_sin"))}
    assert tables and set(tables.values()) == {TensorProto.FLOAT}


def test_fp16_tracks_like_the_official_predictor(fp16_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import torch

    from sam2rt.benchmarks.parity import compare, official_predictor, run_steps
    from sam2rt.runtime.predictor import VideoPredictor

    for i in range(FRAMES):
        shutil.copy(shared_data / "videos" / "bedroom_frames" / f"{i:05d}.jpg", tmp_path / f"{i:05d}.jpg")
    steps = [("points", 0, 1, {"points": [[420, 260], [640, 300]], "labels": [1, 0]}),
             ("points", 0, 2, {"box": [120, 100, 330, 420]}), ("propagate", {})]
    reference = official_predictor(load_manifest(fp16_dir), None, 0)
    ours = VideoPredictor(fp16_dir, threads=1, fill_hole_area=0, progress=False)
    report = compare(run_steps(reference, str(tmp_path), steps, frame_hook=torch.inference_mode),
                     run_steps(ours, str(tmp_path), steps))
    assert len(report.rows) == 1 + 2 + 2 * FRAMES  # object 1's click, both after the box, then tracking
    assert report.mean_iou >= 0.99, report.summary()
    assert report.max_logit_diff > 0  # it really ran in FP16: not bit-identical to FP32


def test_fp16_graphs_pass_the_trt_lint(fp16_dir: Path) -> None:
    from sam2rt.engines.lint import lint_model_dir

    assert lint_model_dir(fp16_dir) == []


def test_bad_requests_write_nothing(fp16_dir: Path, exported_tiny_256: Path, tmp_path: Path, capsys) -> None:
    from sam2rt.calibration.fp16 import convert_model

    with pytest.raises(Sam2rtError, match="holds fp16 graphs"):
        convert_model(fp16_dir, tmp_path / "again")
    with pytest.raises(Sam2rtError, match="is the source model directory"):
        convert_model(exported_tiny_256, exported_tiny_256)
    assert not (tmp_path / "again").exists()
    assert main(["convert", str(exported_tiny_256), "--precision", "int8", "--out", str(tmp_path / "x")]) == 2
    assert "sam2rt calibrate" in capsys.readouterr().err
    assert main(["convert", str(exported_tiny_256), "--precision", "fp8", "--out", str(tmp_path / "y")]) == 2
    assert "choose one of fp32, fp16, int8" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()



def _decoder_feeds(image_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    h = image_size // 16
    return {"image_embed": rng.standard_normal((2, 256, h, h), dtype=np.float32),
            "feat_s0": rng.standard_normal((1, 32, 4 * h, 4 * h), dtype=np.float32),
            "feat_s1": rng.standard_normal((1, 64, 2 * h, 2 * h), dtype=np.float32),
            "point_coords": rng.uniform(0, image_size, (2, 2, 2)).astype(np.float32),
            "point_labels": np.array([[1, 0], [1, -1]], np.int32),
            "mask_input": np.zeros((2, 1, 4 * h, 4 * h), np.float32),
            "has_mask_input": np.zeros(2, bool), "multimask": np.ones(2, bool)}


def _score_head_types(path: Path) -> tuple[onnx.ModelProto, dict[str, int], list[onnx.NodeProto]]:
    from sam2rt.calibration.fp16 import SCORE_HEAD_PREFIX

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    types = {v.name: v.type.tensor_type.elem_type for v in list(model.graph.value_info) + list(model.graph.output)}
    gemms = [n for n in model.graph.node if n.name.startswith(SCORE_HEAD_PREFIX) and n.op_type == "Gemm"]
    assert len(gemms) == 3  # the object-score MLP's three layers
    return model, types, gemms


def test_object_score_head_stays_fp32(fp16_dir: Path, exported_tiny_256: Path, tmp_path: Path) -> None:
    """The score head is FP32 by default. Its logits are a graph output and also feed the decoder's FP16
    no-object gating; onnxconverter-common declared that output FP16 and fed the gating the FP32 value (ONNX
    Runtime refused the graph). Repaired: the output is FP32 as the contract says, the gating reads an FP16
    copy, and both agree on presence with each other and with the FP32 graph."""
    import onnxruntime as ort

    path = fp16_dir / "mask_decoder.onnx"
    model, types, gemms = _score_head_types(path)
    want = {t.name: onnx.helper.np_dtype_to_tensor_dtype(np.dtype(t.dtype)) for t in C.MASK_DECODER.outputs}
    assert {o.name: o.type.tensor_type.elem_type for o in model.graph.output} == want
    assert all(types.get(n.output[0]) == TensorProto.FLOAT for n in gemms)
    assert types.get("object_score_logits_fp16") == TensorProto.FLOAT16
    assert any("object_score_logits_fp16" in n.input for n in model.graph.node)
    feeds = _decoder_feeds(load_manifest(exported_tiny_256).image_size, np.random.default_rng(0))
    ref = ort.InferenceSession(str(exported_tiny_256 / "mask_decoder.onnx"), providers=["CPUExecutionProvider"])
    ours = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    masks, score = ours.run(["low_res_masks", "object_score_logits"], feeds)
    ref_masks, ref_score = ref.run(["low_res_masks", "object_score_logits"], feeds)
    assert score.dtype == np.float32 and np.allclose(score, ref_score, atol=0.01)
    gated = (masks <= C.NO_OBJ_SCORE).reshape(2, -1).all(axis=1)
    assert (gated == (score[:, 0] <= 0)).all()
    assert (gated == (ref_masks <= C.NO_OBJ_SCORE).reshape(2, -1).all(axis=1)).all()
    # off (`--fp16-score-head`): the whole head FP16, the output cast from it as for every other output
    assert main(["convert", str(exported_tiny_256), "--precision", "fp16", "--fp16-score-head", "--graphs",
                 "mask_decoder", "--out", str(tmp_path / "head16")]) == 0
    assert not load_manifest(tmp_path / "head16").raw["conversion"]["graphs"]["mask_decoder"]["score_head_fp32"]
    _, types, gemms = _score_head_types(tmp_path / "head16" / "mask_decoder.onnx")
    assert all(types.get(n.output[0]) == TensorProto.FLOAT16 for n in gemms)
    assert types.get("object_score_logits") == TensorProto.FLOAT
