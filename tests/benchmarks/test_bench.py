"""``sam2rt bench``: the timing helpers on toy objects, then one short real run checked field by field."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pytest

from sam2rt.benchmarks.bench import COMPONENTS, BenchConfig, grid_clicks, timed_calls
from sam2rt.benchmarks.report import load_warning, physical_cores, repeated, summarize, threads_text
from sam2rt.cli import main
from sam2rt.errors import Sam2rtError


class _Toy:
    def outer(self) -> str:
        time.sleep(0.01)
        return self.inner()

    def inner(self) -> str:
        time.sleep(0.06)
        return "done"


def test_timed_calls_counts_nested_time_once_and_restores() -> None:
    toy = _Toy()
    with timed_calls([("outer", toy, "outer"), ("inner", toy, "inner")]) as timer:
        assert toy.outer() == "done"
        assert "outer" in vars(toy)  # wrapped on the instance
    assert timer.calls == {"outer": 1, "inner": 1}
    assert 0.009 < timer.seconds["outer"] < 0.055  # its own 10 ms, not the nested 60 ms
    assert timer.seconds["inner"] >= 0.059
    assert vars(toy) == {} and toy.outer() == "done"  # the class methods are back


def test_timed_calls_restores_after_an_error() -> None:
    toy = _Toy()
    with pytest.raises(RuntimeError), timed_calls([("inner", toy, "inner")]):
        raise RuntimeError("boom")
    assert vars(toy) == {}


def test_grid_clicks_are_deterministic_and_inside_the_frame() -> None:
    for k in (1, 2, 3, 5):
        clicks = grid_clicks(k, 960, 540)
        assert clicks == grid_clicks(k, 960, 540)
        assert [obj for obj, _ in clicks] == list(range(1, k + 1))
        assert all(0 < x < 960 and 0 < y < 540 for _, (x, y) in clicks)
        assert len({tuple(xy) for _, xy in clicks}) == k
    assert grid_clicks(2, 960, 540) == [(1, [240.0, 270.0]), (2, [720.0, 270.0])]


def test_statistics() -> None:
    stats = summarize([0.010, 0.020, 0.030, 0.040, 0.100])
    assert stats["min_ms"] == pytest.approx(10) and stats["max_ms"] == pytest.approx(100)
    assert stats["min_ms"] <= stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"] <= stats["max_ms"]
    assert stats["samples"] == 5
    assert not repeated([10.0, 10.5, 11.0])["noisy"]
    noisy = repeated([10.0, 13.0, 11.0])
    assert noisy["noisy"] and noisy["median"] == 11.0 and noisy["spread"] == pytest.approx(3 / 11)
    with pytest.raises(Sam2rtError, match="steady-state"):
        summarize([])


def test_load_above_the_core_count_is_warned_about() -> None:
    busy = {"usable_cores": 2, "loadavg_start": [1.5, 1.0, 1.0], "loadavg_end": [6.2, 3.0, 2.0]}
    warning = load_warning(busy)
    assert warning is not None and "6.2" in warning and "2 usable cores" in warning
    assert load_warning({**busy, "loadavg_end": [1.9, 1.0, 1.0]}) is None  # at or under the cores: quiet
    assert load_warning({"usable_cores": 2, "loadavg_start": None, "loadavg_end": None}) is None  # unknown
    assert threads_text(0).startswith("ONNX Runtime's default") and threads_text(2) == "2 intra-op threads"
    assert threads_text(0, 2).endswith("(one per physical core: 2 here)")
    assert physical_cores() is None or 1 <= physical_cores() <= os.cpu_count()


def test_config_needs_a_steady_state_frame() -> None:
    with pytest.raises(Sam2rtError, match="--frames 8 or more"):
        BenchConfig(model=Path("m"), video=Path("v"), frames=7, warmup=7).check()
    with pytest.raises(Sam2rtError, match="--objects"):
        BenchConfig(model=Path("m"), video=Path("v"), objects=0).check()
    BenchConfig(model=Path("m"), video=Path("v"), frames=8).check()


def test_checkpoint_and_seed_exclude_each_other(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "--model", "m", "--video", "v", "--checkpoint", "x.pt", "--seed", "1"])
    assert "not allowed with" in capsys.readouterr().err


def _check_stats(stats: dict, samples: int, positive: bool = True) -> None:
    assert stats["samples"] == samples
    assert stats["min_ms"] <= stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"] <= stats["max_ms"]
    assert stats["min_ms"] > 0 if positive else stats["min_ms"] >= -0.01


def test_bench_end_to_end(exported_tiny_256: Path, shared_data: Path, tmp_path: Path, capsys) -> None:
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    frames, repeats = 4, 1  # one repeat keeps the test short; medians and the noise flag: test_statistics
    rc = main(["bench", "--model", str(exported_tiny_256), "--video", str(shared_data / "videos" / "bedroom.mp4"),
               "--frames", str(frames), "--objects", "2", "--warmup", "1", "--repeats", str(repeats),
               "--compare-official", "--seed", "0", "--soak", "20", "--json", str(out_json), "--plot", str(out_png)])
    printed = capsys.readouterr().out
    assert rc == 0
    for text in ("image_encoder", "frame (wall)", "first frame", "soak", "speedup", "IoU vs official",
                 "intra-op threads", "load avg"):
        assert text in printed

    result = json.loads(out_json.read_text())
    assert result["config"]["frames"] == frames and result["config"]["seed"] == 0
    assert result["machine"]["cpu"] and result["machine"]["usable_cores"] >= 1
    assert len(result["machine"]["loadavg_start"]) == len(result["machine"]["loadavg_end"]) == 3
    assert {"numpy", "onnxruntime", "torch"} <= set(result["machine"]["versions"])
    assert result["device"]["name"] == "cpu"
    assert result["model"] == {**result["model"], "name": "sam2.1_hiera_tiny", "image_size": 256, "precision": "fp32"}

    steady = (frames - 1) * repeats  # frames 1..3 of each repeat with 2 objects
    assert set(COMPONENTS) | {"host_other"} <= set(result["components"])
    for name, stats in result["components"].items():
        _check_stats(stats, steady, positive=name != "host_other")
    for graph in ("image_encoder", "memory_attention", "mask_decoder", "memory_encoder"):
        assert result["components"][graph]["calls_per_frame"] == 1.0  # both objects in one batched call

    e2e = result["e2e"]
    assert [row["objects"] for row in e2e["by_objects"]] == [1, 2]
    for row in e2e["by_objects"]:
        assert row["fps"]["median"] > 0 and len(row["fps"]["runs"]) == repeats
    for key in ("first_frame_ms", "add_prompt_ms"):
        assert e2e[key]["median"] > 0 and len(e2e[key]["runs"]) == repeats
    _check_stats(e2e["frame_ms"], steady)
    assert isinstance(result["noisy"], bool)

    memory = result["memory"]
    assert memory["peak_rss_mb"] >= memory["current_rss_mb"] * 0.5 > 0
    soak = memory["soak"]
    assert soak["frames"] == 20 and soak["reference_frame"] == 4 and soak["fps"] > 0
    assert [s["frame"] for s in soak["samples"]] == [0, 4, 20]
    assert math.isfinite(soak["rss_growth_pct"]) and soak["stored_end_mb"] > 0

    official = result["official"]
    assert official["frames"] == frames and official["objects"] == 2 and official["device"] == "cpu"
    assert official["official_s_per_frame"] > 0 and official["ours_s_per_frame"] > 0
    assert official["speedup_vs_official"] > 0 and official["propagate_speedup_vs_official"] > 0
    assert official["cpu_speedup_vs_official"] > 0 and len(official["ours_runs_cpu_s"]) == 1
    iou = official["iou"]
    assert iou["masks"] == 1 + 2 + frames * 2  # click 1 (one object), click 2 (two), propagation
    assert iou["results_match"] and iou["mean"] >= 0.99 and 0 <= iou["min"] <= 1
    assert iou["presence_disagreements"] == 0 and iou["mean_both_present"] == iou["mean"]  # FP32: no flips
    assert {frame for step, frame, _ in iou["per_frame_min"] if step.endswith("propagate")} == set(range(frames))

    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out_png.stat().st_size > 10_000
