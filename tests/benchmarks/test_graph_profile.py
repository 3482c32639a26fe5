"""Per-graph profile (``benchmarks.graph_profile``): steady-state feeds, side-by-side timing, op breakdown."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sam2rt import contract as C
from sam2rt.benchmarks.graph_profile import main, steady_feeds
from sam2rt.manifest import load_manifest


def test_steady_feeds_are_a_full_bank() -> None:
    bank = C.BankConfig()
    feeds = steady_feeds(C.MEMORY_ATTENTION, 256, bank, objects=3)
    # what the runtime sends in steady state: the used slots only, 1 conditioning + 6 recent, 16 pointers
    assert feeds["memory"].shape == (7, 3, 256, C.MEM_DIM) and feeds["memory"].dtype == np.float32
    assert feeds["memory_valid"].all() and feeds["obj_ptr_valid"].all() and feeds["obj_ptrs"].shape == (16, 3, 256)
    assert feeds["memory_tpos"].dtype == np.int32 and feeds["memory_tpos"][:, 0].tolist() == [6, 5, 4, 3, 2, 1, 0]
    decoder = steady_feeds(C.MASK_DECODER, 256, bank, objects=2)
    assert decoder["point_labels"].tolist() == [[1, -1], [1, -1]] and decoder["image_embed"].shape == (2, 256, 16, 16)


def test_profile_two_models_side_by_side(exported_tiny_256: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "profile.json"
    assert main(["--models", str(exported_tiny_256), str(exported_tiny_256), "--graphs", "memory_attention",
                 "memory_encoder", "--threads", "1", "--calls", "1", "--profile", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| memory_attention | 1 |" in printed and "node time" in printed and "load average" in printed
    result = json.loads(out.read_text())
    assert [(r["graph"], r["threads"]) for r in result["rows"]] == [("memory_attention", 1)] * 2 + \
        [("memory_encoder", 1)] * 2
    for row in result["rows"]:
        assert row["wall_ms"] > 0 and row["cpu_ms"] >= 0 and row["precision"] == "fp32"
        assert sum(row["ops"].values()) > 0 and list(row["ops"].values()) == sorted(row["ops"].values(), reverse=True)
    attention_ops = set(result["rows"][0]["ops"])
    assert {"Softmax", "LayerNormalization"} <= attention_ops  # real node events of the graph, by op type
    assert load_manifest(exported_tiny_256).image_size == 256
