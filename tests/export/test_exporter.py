"""Export end to end: parity with PyTorch for SAM 2.1 and SAM 2 tiny, checkpoint files, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch

from sam2rt import contract as C
from sam2rt.cli import main
from sam2rt.export import verify
from sam2rt.export.checkpoints import build_model, sha256_file, write_official_checkpoint
from sam2rt.export.exporter import ExportConfig, export_model
from sam2rt.models import MODELS

SIZE = 256


def _manifest(out: Path) -> dict:
    return json.loads((out / C.MANIFEST_NAME).read_text())


def _assert_verified(manifest: dict) -> None:
    for spec in C.GRAPHS:
        check = manifest["verification"][spec.name]
        assert check["passed"], (spec.name, check)
        assert check["max_abs_diff"] <= 1e-4
        assert len(check["cases"]) >= 1


def test_sam21_tiny_graphs_match_pytorch(exported_tiny_256: Path) -> None:
    manifest = _manifest(exported_tiny_256)
    _assert_verified(manifest)
    assert manifest["model"] == {"name": "sam2.1_hiera_tiny", "version": "2.1",
                                 "config": "configs/sam2.1/sam2.1_hiera_t.yaml", "image_size": SIZE}
    assert manifest["source"] == {"checkpoint_sha256": None, "random_seed": 0}
    assert manifest["opset"] == 18
    for spec in C.GRAPHS:
        entry = manifest["graphs"][spec.name]
        path = exported_tiny_256 / entry["file"]
        assert entry["sha256"] == sha256_file(path)
        assert [t["name"] for t in entry["inputs"]] == spec.input_names
        graph = onnx.load(str(path), load_external_data=False).graph
        assert [i.name for i in graph.input] == spec.input_names
        assert [o.name for o in graph.output] == spec.output_names


def test_graphs_are_constant_folded_and_pass_the_trt_lint(exported_tiny_256: Path) -> None:
    """Folding removed the If nodes (Hiera's window-embedding tile) and OneHot chains before the hash; expand
    replaced the decoder's repeat_interleave; TensorRT 10.3's lint finds nothing in any graph."""
    from sam2rt.engines.lint import lint_model_dir

    manifest = _manifest(exported_tiny_256)
    for spec in C.GRAPHS:
        folding = manifest["graphs"][spec.name]["constant_folding"]
        assert folding["nodes_after"] < folding["nodes_before"], spec.name
        graph = onnx.load(str(exported_tiny_256 / spec.filename), load_external_data=False).graph
        assert len(graph.node) == folding["nodes_after"]
        assert not {n.op_type for n in graph.node} & {"If", "OneHot", "Loop", "NonZero"}, spec.name
    assert manifest["graphs"]["image_encoder"]["constant_folding"]["nodes_after"] < \
        manifest["graphs"]["image_encoder"]["constant_folding"]["nodes_before"] / 2
    assert lint_model_dir(exported_tiny_256) == []


def masked_slots_are_ignored(model_dir: Path) -> float:
    """Max |difference| of memory attention's output between a bank whose empty slots hold zeros and one whose
    empty slots hold noise: 0.0 when the key mask gives them exactly zero weight. Used for FP32 and FP16."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_dir / "memory_attention.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    h, M, P, B = SIZE // 16, 3, 4, 2
    valid = np.array([[True, True], [True, False], [False, False]])
    ptr_valid = np.array([[True, False], [True, True], [False, True], [False, False]])
    memory = rng.standard_normal((M, B, h * h, C.MEM_DIM)).astype(np.float32)
    ptrs = rng.standard_normal((P, B, C.HIDDEN_DIM)).astype(np.float32)
    feeds = {"vision_feat": rng.standard_normal((1, C.HIDDEN_DIM, h, h)).astype(np.float32),
             "memory_valid": valid, "memory_tpos": np.full((M, B), 6, np.int32), "obj_ptr_valid": ptr_valid,
             "obj_ptr_tpos": np.zeros((P, B), np.float32)}
    clean = sess.run(None, {**feeds, "memory": np.where(valid[:, :, None, None], memory, 0),
                            "obj_ptrs": np.where(ptr_valid[:, :, None], ptrs, 0)})[0]
    noisy = sess.run(None, {**feeds, "memory": np.where(valid[:, :, None, None], memory, 5 * memory),
                            "obj_ptrs": np.where(ptr_valid[:, :, None], ptrs, 5 * ptrs)})[0]
    return float(np.abs(clean - noisy).max())


def test_key_mask_is_exact(exported_tiny_256: Path) -> None:
    """The FP16-representable key mask (-1e4) still gives empty slots exactly zero weight in FP32."""
    from sam2rt.export.memory_attention import MASKED_LOGIT

    assert abs(MASKED_LOGIT) <= 65504  # representable in FP16
    assert masked_slots_are_ignored(exported_tiny_256) == 0.0


def test_sam2_tiny_graphs_match_pytorch(tmp_path: Path) -> None:
    """SAM 2.0 has no temporal pointer encoding and no no-object spatial embedding: other branches."""
    export_model(ExportConfig(model="sam2_hiera_tiny", out=tmp_path, image_size=SIZE, random_seed=1), log=print)
    manifest = _manifest(tmp_path)
    _assert_verified(manifest)
    assert manifest["model"]["version"] == "2.0"
    assert manifest["tracking"]["use_signed_tpos_enc_to_obj_ptrs"] is False


def test_checkpoint_export_with_absent_objects(tmp_path: Path) -> None:
    """Export from an official-format checkpoint whose object-score head says 'absent' for everything."""
    model, _ = build_model("sam2.1_hiera_tiny", SIZE, random_seed=3)
    with torch.no_grad():
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(-50.0)
    ckpt = write_official_checkpoint(model, tmp_path / "forced_absent.pt")
    out = tmp_path / "out"
    export_model(ExportConfig(model="sam2.1_hiera_tiny", out=out, image_size=SIZE, checkpoint=ckpt), log=print)
    manifest = _manifest(out)
    _assert_verified(manifest)
    assert manifest["source"]["checkpoint_sha256"] == sha256_file(ckpt)
    coverage = manifest["verification"]["mask_decoder"]["cases"][-1]
    assert coverage.endswith("present/absent: 0/8"), coverage


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_exports_its_tracking_graphs(name: str, tmp_path: Path) -> None:
    """Structural check for every model: build, trace and ONNX-check the three per-object graphs.

    The full export of every model (with the image encoder and verification) is the acceptance command
    in the README; here the largest trunks would dominate CI time.
    """
    from sam2rt.export.exporter import _example_inputs, _wrappers, export_graph

    model, _ = build_model(name, 128, random_seed=0)
    inputs, wrappers = _example_inputs(128, C.BankConfig()), _wrappers(model, 128)
    for spec in C.GRAPHS[1:]:
        export_graph(wrappers[spec.name](), spec, inputs[spec.name], tmp_path / spec.filename)
        assert (tmp_path / spec.filename).stat().st_size > 0


def _run_cli(*args: str) -> int:
    return main(list(args))


def test_cli_missing_checkpoint(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert _run_cli("export", "--model", "sam2.1_hiera_tiny", "--checkpoint", "/nonexistent.pt", "--out", str(out)) == 2
    assert "not found" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "sam3_hiera_tiny", "--random-weights"], "choose one of: sam2.1_hiera_tiny"),
        (["--model", "sam2.1_hiera_tiny", "--random-weights", "--image-size", "500"], "multiple of 32"),
        (["--model", "sam2.1_hiera_tiny"], "exactly one of --checkpoint"),
    ],
)
def test_cli_bad_requests(args: list[str], message: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert _run_cli("export", *args, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_cli_corrupt_and_foreign_checkpoints(tmp_path: Path, capsys) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00not a checkpoint" * 100)
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": {"backbone.weight": torch.zeros(3)}}, foreign)
    for ckpt, message in [(corrupt, "corrupt.pt"), (foreign, "does not belong to model")]:
        out = tmp_path / f"out_{ckpt.stem}"
        assert _run_cli("export", "--model", "sam2.1_hiera_tiny", "--checkpoint", str(ckpt), "--out", str(out)) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()


def test_cli_unwritable_output(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = _run_cli("export", "--model", "sam2.1_hiera_tiny", "--random-weights", "--image-size", "128",
                    "--no-verify", "--out", str(blocker / "sub"))
    assert code == 2
    assert "choose a writable --out" in capsys.readouterr().err


def test_failed_verification_writes_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(verify, "TOLERANCE_FP32", -1.0)  # no graph can pass
    out = tmp_path / "out"
    code = _run_cli("export", "--model", "sam2.1_hiera_tiny", "--random-weights", "--image-size", "128",
                    "--out", str(out))
    assert code == 2
    captured = capsys.readouterr()
    assert "verification failed" in captured.err and "FAILED" in captured.out
    assert not out.exists()  # the folder the failed export created is removed again (issue 20, item 3)
