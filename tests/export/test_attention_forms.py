"""Memory attention's two export forms: "fused" (TensorRT's fusable attention) and "cpu" (value projection
after the weighted sum) compute the same thing; the lint tells them apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def test_cpu_form_equals_fused_form_and_is_reported(exported_tiny_256: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from sam2rt import contract as C
    from sam2rt.benchmarks.memory_attention import bank_feeds
    from sam2rt.engines.lint import lint_file
    from sam2rt.export.checkpoints import build_model
    from sam2rt.export.exporter import _example_inputs, export_graph
    from sam2rt.export.memory_attention import MemoryAttentionGraph
    from sam2rt.runtime.backends.ort import OrtRunner

    model, _ = build_model("sam2.1_hiera_tiny", 256, random_seed=0)  # the weights of exported_tiny_256
    path = tmp_path / "memory_attention.onnx"
    export_graph(MemoryAttentionGraph(model, 256, "cpu"), C.MEMORY_ATTENTION,
                 _example_inputs(256, C.BankConfig())["memory_attention"], path)
    findings = [v for v in lint_file(path) if v.rule == "attention-form"]
    layers = len(model.memory_attention.layers)
    assert len(findings) == layers and all("head sizes differ (Q 256, K 256, V 64)" in v.message for v in findings)

    fused = exported_tiny_256 / C.MEMORY_ATTENTION.filename
    feeds = {"vision_feat": np.random.default_rng(0).standard_normal((1, 256, 16, 16), np.float32),
             **bank_feeds(10, 19, 5, 256)}
    outs = [OrtRunner(C.MEMORY_ATTENTION, 256, p, threads=1).run(feeds)["conditioned_feat"] for p in (path, fused)]
    np.testing.assert_allclose(outs[0], outs[1], rtol=0, atol=1e-5)


@pytest.mark.parametrize("form", ["cpu", "fused"])
def test_export_warnings_name_the_cpu_form_once(form: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """After export/convert/calibrate: a cpu-form model's attention findings are one note (what the form is),
    its other findings and every finding of a fused-form model stay warnings."""
    import json

    import sam2rt.engines.lint as lint
    from sam2rt.cli.lint import lint_warnings
    from sam2rt.engines.lint import Violation

    (tmp_path / "manifest.json").write_text(json.dumps({"exporter": {"attention": form}}))
    found = [Violation("memory_attention", f"/Softmax_{i}", "Softmax", "attention-form", "head sizes differ")
             for i in range(2)] + [Violation("image_encoder", "/If", "If", "op", "If is not supported")]
    monkeypatch.setattr(lint, "lint_model_dir", lambda _: found)
    count = lint_warnings(tmp_path)
    err = capsys.readouterr().err
    if form == "cpu":
        assert count == 1 and err.count("[attention-form]") == 0 and "2 attention block(s)" in err
        assert "--attention fused" in err and "/If" in err
    else:
        assert count == 3 and err.count("attention-form") == 2 and "note:" not in err


@pytest.mark.parametrize("heads", [1, 2])
def test_cpu_form_rope_by_two_projections_is_bit_equal(heads: int) -> None:
    """``project_rotated`` (u·C + u'·S, the cpu form) gives the official rotation's values bit for bit, for
    queries (one grid) and for memory keys (several frames on one grid), with one head and with two."""
    torch = pytest.importorskip("torch")
    from torch import nn

    from sam2rt.export.memory_attention import _project, _rotate, pair_tables, project_rotated, swapped

    torch.manual_seed(0)
    attn = nn.Module()
    attn.num_heads, attn.q_proj = heads, nn.Linear(64, 128)
    angles = torch.rand(16, 128 // heads // 2) * 6.3
    cos, sin = angles.cos(), angles.sin()
    for groups in (1, 3):
        x = torch.randn(2, groups * 16, 64)
        with torch.no_grad():
            u = _project(attn, attn.q_proj, x)  # (B, heads, G*16, d)
            b, n, _, d = u.shape
            expected = _rotate(u.reshape(b, n, groups, 16, d), cos, sin).reshape(b, n, -1, d)
            got = project_rotated(attn, attn.q_proj, x, *pair_tables(cos, sin, heads), swapped(attn.q_proj))
        assert got.shape == expected.shape and torch.equal(got, expected)
