"""The GPU check on CPU: exit 3 with a loud line where CUDA (or TensorRT) is missing, and its TensorRT-vs-ONNX
Runtime comparison logic run on the fake CUDA/TensorRT of tests/runtime/backends/fake_gpu.py, including a
planted stale-graph bug it must catch."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime" / "backends"))  # the fake GPU's home
import fake_gpu  # noqa: E402


def test_gpu_check_without_cuda_exits_3_loudly() -> None:
    from sam2rt.errors import Sam2rtError
    from sam2rt.runtime.backends.cuda import device_properties

    try:
        device_properties()
        pytest.skip("a CUDA GPU is present: the check would run for real")
    except Sam2rtError:
        pass
    done = subprocess.run([sys.executable, "-m", "sam2rt.benchmarks.gpu_check"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 3, done.stderr
    assert "NOTHING CHECKED" in done.stderr and "all checks passed" not in done.stdout
    assert "cuda-python" in done.stderr or "nvidia-smi" in done.stderr  # says what is missing


def test_cuda_layer_alone_is_incomplete(monkeypatch, tmp_path: Path) -> None:
    """On the fake CUDA runtime the CUDA layer runs and passes; without TensorRT the check exits 3, not 0."""
    from sam2rt.benchmarks import gpu_check

    cudart = fake_gpu.FakeCudart()
    fake_gpu.install(monkeypatch, cudart)
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorrt" else real_find(name, *a))
    assert gpu_check.main(["--out", str(tmp_path), "--json", str(tmp_path / "r.json")]) == 3
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["status"] == "incomplete" and report["cuda_layer"] == "passed"
    assert cudart.live() == {"device": 0, "pinned": 0, "streams": 0, "events": 0, "graphs": 0}


def _clip(n: int, H: int = 96, W: int = 128) -> list[np.ndarray]:
    base = np.linspace(0, 90, H * W * 3).reshape(H, W, 3)
    out = []
    for t in range(n):
        f = base.copy()
        y, x = 30 + int(15 * np.sin(t / 9)), 40 + int(30 * np.sin(t / 13))
        f[y:y + 30, x:x + 30] = (230, 200, 40)
        out.append(f.astype(np.uint8))
    return out


def _pairs(engine, cudart, n: int = 2):
    from sam2rt.runtime.backends.executor import HostExecutor
    from sam2rt.runtime.backends.trt_executor import TrtExecutor
    from sam2rt.runtime.stream import StreamTracker

    graphs = fake_gpu.FakeGraphs(engine.size)
    engines = fake_gpu.trt_engines(fake_gpu.fake_engines(cudart, graphs))
    rounder = engines.pop("bf16_round")
    return [(StreamTracker(engine=engine, executor=TrtExecutor(engines, engine.size, 1920, rounder)),
             StreamTracker(engine=engine, executor=HostExecutor(graphs.runners(), engine.size)))
            for _ in range(n)]


@pytest.fixture(scope="module")
def engine(exported_tiny_256: Path):
    from sam2rt.runtime.engine import Engine

    return Engine(exported_tiny_256, threads=1)


def test_live_comparison_passes_a_correct_device_tracker(engine, monkeypatch) -> None:
    from sam2rt.benchmarks import live_check as L

    cudart = fake_gpu.FakeCudart()
    fake_gpu.install(monkeypatch, cudart)
    pairs = _pairs(engine, cudart)
    clip = _clip(80)
    results = L.run_pairs(pairs, [clip, clip[::-1]], L.SCRIPT, L.TOLERANCES["fp32"])
    for (device, _), result in zip(pairs, results):
        assert result["frames"] == 80 and not result["failures"], result["failures"][:3]
        assert {r["obj"] for r in result["rows"]} == {1, 2, 3}  # the scripted objects were all compared
        assert L.check_graphs(device.executor, L.SCRIPT, result["frames"]) == []
        entry = L.summary(result)
        assert entry["max_logit_diff"] == 0.0 and entry["min_iou"] == 1.0  # same numpy graphs on both sides
        assert entry["track_p99_ms"] >= entry["track_p50_ms"] > 0


def test_live_comparison_catches_a_stale_graph(engine, monkeypatch) -> None:
    """Planted bug: the step key forgets the object count and releasing buffers forgets the graph, so after
    an object is added the graph captured with the old buffers replays. The comparison must fail."""
    from sam2rt.benchmarks import live_check as L

    cudart = fake_gpu.FakeCudart()
    fake_gpu.install(monkeypatch, cudart)
    (device, host), = _pairs(engine, cudart, 1)
    device._step_key = lambda bound: ()
    device.executor.graphs.drop = lambda: None
    result, = L.run_pairs([(device, host)], [_clip(50)], L.SCRIPT, L.TOLERANCES["fp32"])
    assert result["failures"], "a stale graph went unnoticed"
    assert all(f.startswith("frame") for f in result["failures"])
    assert min(int(f.split()[1].rstrip(":")) for f in result["failures"]) >= 31  # from the new object on


def test_a_failure_in_the_tensorrt_part_exits_1(monkeypatch, tmp_path: Path) -> None:
    """TensorRT 'installed' but its part raising (a binding without an API we call): exit 1, reported."""
    from sam2rt.benchmarks import gpu_check, gpu_check_trt

    fake_gpu.install(monkeypatch, fake_gpu.FakeCudart())
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "tensorrt" else real_find(name, *a))

    def broken(*args):
        raise AttributeError("'ICudaEngine' object has no attribute 'device_memory_size_v2'")

    monkeypatch.setattr(gpu_check_trt, "tensorrt_stack", broken)
    assert gpu_check.main(["--out", str(tmp_path)]) == 1
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["status"] == "failed" and "device_memory_size_v2" in report["failure"]
