"""Memory attention on the valid prefix of the bank equals attention over the whole masked bank; the
side-by-side benchmark reports both ways."""

from __future__ import annotations

import numpy as np

from sam2rt.benchmarks.memory_attention import bank_feeds, prefix, run
from sam2rt.runtime.backends import load_runners


def test_valid_prefix_equals_the_masked_bank(exported_tiny_256):
    runner = load_runners(exported_tiny_256, threads=1)["memory_attention"]
    vision = np.random.default_rng(3).standard_normal((1, 256, 16, 16), np.float32)
    for valid in (1, 3, 7):
        full = {"vision_feat": vision, **bank_feeds(10, 19, valid, 256, seed=valid)}
        out_full = runner.run(full)["conditioned_feat"]
        out_cut = runner.run(prefix(full, valid, 2 * valid))["conditioned_feat"]
        np.testing.assert_allclose(out_cut, out_full, rtol=0, atol=1e-5)
        # what the masked slots hold changes nothing: they are really ignored
        noisy = {**full, "memory": full["memory"].copy(), "obj_ptrs": full["obj_ptrs"].copy()}
        noisy["memory"][valid:] = 1e3
        noisy["obj_ptrs"][2 * valid:] = -1e3
        np.testing.assert_allclose(runner.run(noisy)["conditioned_feat"], out_full, rtol=0, atol=1e-5)


def test_benchmark_reports_both_ways(exported_tiny_256):
    result = run([exported_tiny_256], valid=(3,), repeats=1, iters=1, threads=1)
    entry = result["models"][str(exported_tiny_256)]
    case = entry["valid"]["3"]
    assert entry["M"] == 10
    assert case["all_slots_ms"]["median"] > 0 and case["valid_prefix_ms"]["median"] > 0
    assert case["max_abs_diff"] < 1e-5 and "loadavg_end" in result["machine"]
