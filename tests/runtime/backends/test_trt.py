"""TensorRT and CUDA: run only where both exist (marked; skipped with the reason elsewhere, e.g. in CI)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.trt]


def _require_gpu_stack() -> None:
    if importlib.util.find_spec("tensorrt") is None:
        pytest.skip('TensorRT is not installed (pip install "sam2rt[trt]"); TensorRT tests need it and a GPU')
    from sam2rt.errors import Sam2rtError
    from sam2rt.runtime.backends.cuda import device_properties

    try:
        device_properties()
    except Sam2rtError as e:
        pytest.skip(f"no usable CUDA GPU: {e}")


def test_cuda_buffers_round_trip() -> None:
    _require_gpu_stack()
    from sam2rt.runtime.backends.cuda import CudaAllocator, Stream

    stream = Stream()
    alloc = CudaAllocator(stream)
    buf = alloc.alloc((4, 8), np.float32, mirrored=True)
    buf.mirror[...] = np.arange(32, dtype=np.float32).reshape(4, 8)
    alloc.upload(buf, stream)
    buf.mirror[...] = 0
    alloc.download(buf, stream)
    stream.synchronize()
    np.testing.assert_array_equal(buf.mirror.reshape(-1), np.arange(32))
    alloc.close()
    stream.close()


def test_trt_backend_matches_ort(exported_tiny_256: Path, tmp_path: Path) -> None:
    """Build fp32 engines, then the StreamTracker on TensorRT (device bank, CUDA graphs) against ONNX Runtime
    CPU, with a new object and a correction mid-stream and a second session (buffers reallocated)."""
    _require_gpu_stack()
    from sam2rt.engines.config import BuildConfig
    from sam2rt.engines.model_engines import build_model_engines
    from sam2rt.runtime.stream import StreamTracker

    engines = tmp_path / "engines"
    build_model_engines(exported_tiny_256, engines, BuildConfig(max_objects=2, max_points=2))
    frames = [np.full((96, 128, 3), 40 + 3 * t, np.uint8) for t in range(36)]
    for t, f in enumerate(frames):
        f[20 + t % 30:60 + t % 30, 30:80] = 220
    host, device = StreamTracker(exported_tiny_256), StreamTracker(exported_tiny_256, backend="trt",
                                                                   engine_dir=engines)
    for session in range(2):
        for tracker in (host, device):
            tracker.load_first_frame(frames[0])
            tracker.add_new_prompt(0, 1, points=[[60, 50]], labels=[1])
        for t, frame in enumerate(frames[1:], 1):
            _, a = host.track(frame)
            _, b = device.track(frame)
            assert ((a > 0) == (b > 0)).mean() > 0.99, (session, t)
            if t == 5:
                for tracker in (host, device):
                    tracker.add_new_prompt(t, 2, points=[[20, 20]], labels=[1])
            if t == 9:
                for tracker in (host, device):
                    tracker.add_new_prompt(t, 1, points=[[100, 80]], labels=[0], clear_old_points=False)
    graphs = device.executor.graphs  # per session: 1 object (frames 1-5), 2 objects (6-35): one graph each
    assert 1 <= graphs.captures <= 4 and graphs.replays >= 2 * 30 - 8, (graphs.captures, graphs.replays)
    device.close()
    assert device.executor.allocator.allocated == 0
