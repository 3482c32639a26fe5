"""The TensorRT live path on CPU (issue 18): the real ``TrtExecutor``, ``GraphCache``, ``CudaAllocator`` and
``StreamTracker`` over a fake CUDA runtime and fake TensorRT engines (``fake_gpu``) whose CUDA graphs replay the
recorded work on the recorded addresses, as a GPU does. Against the host executor on the same numpy graphs:
equal results frame for frame, one capture per object count, replays binding what was captured, no leaks,
one user-managed scratch sized by the largest engine, nothing allocated by runners nobody runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fake_gpu import FakeCudart, FakeGraphs, fake_engines, trt_engines
from sam2rt.errors import Sam2rtError


def _frames(n: int, H: int = 96, W: int = 128) -> list[np.ndarray]:
    base = np.linspace(0, 90, H * W * 3).reshape(H, W, 3)
    out = []
    for t in range(n):
        f = base.copy()
        y, x = 20 + int(15 * np.sin(t / 9)), 25 + int(30 * np.sin(t / 13))
        f[y:y + 30, x:x + 30] = (230, 200, 40)
        out.append(f.astype(np.uint8))
    return out


def _pair(engine, cudart: FakeCudart, rounder: bool = True):
    """(host tracker, device tracker) on the same numpy graphs."""
    from sam2rt.runtime.backends.executor import HostExecutor
    from sam2rt.runtime.backends.trt_executor import TrtExecutor
    from sam2rt.runtime.stream import StreamTracker

    graphs = FakeGraphs(engine.size)
    engines = trt_engines(fake_engines(cudart, graphs))
    bf16 = engines.pop("bf16_round")
    host = StreamTracker(engine=engine, executor=HostExecutor(graphs.runners(), engine.size, round_bf16=rounder))
    device = StreamTracker(engine=engine, executor=TrtExecutor(engines, engine.size, 4096, bf16 if rounder else None))
    return host, device


# the scenario: (frame, action) -- object count 1 -> 2 -> 3 -> 2 -> 1, corrections by clicks and by a mask
SCRIPT = {0: ("add", 1, [40, 35]), 40: ("add", 2, [100, 70]), 80: ("correct", 1, [45, 40]),
          120: ("add", 3, [20, 80]), 160: ("remove", 2, None), 200: ("mask", 3, None),
          230: ("correct", 3, [25, 75]), 240: ("remove", 1, None)}


def _act(tracker, t: int, action: tuple) -> None:
    kind, obj, point = action
    if kind == "add":
        tracker.add_new_prompt(t, obj, points=[point], labels=[1])
    elif kind == "correct":
        tracker.add_new_prompt(t, obj, points=[point], labels=[0], clear_old_points=False)
    elif kind == "mask":
        mask = np.zeros((96, 128), bool)
        mask[60:90, 10:40] = True
        tracker.add_new_prompt(t, obj, mask=mask)
    else:
        tracker.remove_object(obj)


def test_one_graph_per_object_count_replays_what_it_captured(engine, fake_gpu: FakeCudart) -> None:
    """300 frames, objects added, corrected (clicks, mask) and removed: the device tracker's logits equal the host
    tracker's on every frame; at most one capture per object-count change; every replay binds exactly the
    addresses (and shapes) its graph was captured with."""
    host, device = _pair(engine, fake_gpu)
    ex = device.executor
    graphs, checked = ex.graphs, []
    step = graphs.step

    def checked_step(key, enqueue) -> None:
        full = (graphs.generation, *key)
        if graphs._key == full and graphs._graph is not None:  # a replay: what would this frame bind?
            fake_gpu.capturing[ex.stream.handle] = []
            enqueue()
            now = [sig for sig, _ in fake_gpu.capturing.pop(ex.stream.handle)]
            assert now == [sig for sig, _ in fake_gpu.execs[graphs._graph._exec]], "a replay would bind other buffers"
            checked.append(full)
        step(key, enqueue)

    graphs.step = checked_step
    frames = _frames(300)
    for tracker in (host, device):
        tracker.load_first_frame(frames[0])
        _act(tracker, 0, SCRIPT[0])
    changes = 0
    for t in range(1, 300):
        ids_a, a = host.track(frames[t])
        ids_b, b = device.track(frames[t])
        assert ids_a == ids_b
        np.testing.assert_array_equal(a, b, err_msg=f"frame {t}")
        if t in SCRIPT:
            before = len(host.obj_ids)
            for tracker in (host, device):
                _act(tracker, t, SCRIPT[t])
            changes += len(host.obj_ids) != before
    assert changes == 4
    assert 1 <= graphs.captures <= changes + 1, graphs.captures
    assert graphs.replays > 250 and len(checked) == graphs.replays
    assert len(fake_gpu.execs) == 1  # one live graph at a time


def test_captured_step_never_rebinds_and_rounder_has_its_own_step_context(engine, fake_gpu: FakeCudart) -> None:
    """The contexts a graph was captured from are bound only while capturing (no direct run touches them), and
    every context is user-managed on the executor's one scratch, sized by the largest engine."""
    _, device = _pair(engine, fake_gpu)
    ex = device.executor
    frames = _frames(12)
    device.load_first_frame(frames[0])
    device.add_new_prompt(0, 1, points=[[40, 35]], labels=[1])
    binds = None
    for t in range(1, 12):
        device.track(frames[t])
        if ex.graphs.captures and binds is None:
            binds = {g: c.context.binds for g, c in ex.step_contexts.items()}
    assert set(ex.step_contexts) == {"memory_attention", "mask_decoder", "memory_encoder", "bf16_round"}
    assert {g: c.context.binds for g, c in ex.step_contexts.items()} == binds  # replays only: no rebinding
    assert all(ex.step_contexts[g] is not ex.direct.get(g) for g in ex.step_contexts)
    contexts = [c.context for c in [*ex.direct.values(), *ex.step_contexts.values()]]
    assert all(c.strategy == "USER_MANAGED" and c.scratch == (ex.scratch.ptr, ex.scratch.nbytes) for c in contexts)
    assert ex.scratch_bytes == max(e.scratch_bytes for e in ex.engines.values())
    # lazily made: no context of the engine for the other preprocessing pass order, none for postprocessing masks
    assert "preprocess_horizontal_first" not in ex.direct or "preprocess_vertical_first" not in ex.direct


def test_closing_streams_releases_everything(exported_tiny_256: Path, fake_gpu: FakeCudart, monkeypatch) -> None:
    """Model(backend="trt").stream() opened and closed 100 times (frames tracked, masks made on the device):
    nothing stays allocated, no stream, event or graph is left; the runners nobody ran allocated nothing."""
    from sam2rt.engines.config import BuildConfig
    from sam2rt.runtime.backends import trt, trt_executor
    from sam2rt.runtime.model import Model

    graphs = FakeGraphs(256)
    engines = trt_engines(fake_engines(fake_gpu, graphs))
    rounder = engines.pop("bf16_round")
    monkeypatch.setattr(trt, "load_engines", lambda model_dir, engine_dir=None: (engines, BuildConfig(max_objects=4)))
    monkeypatch.setattr(trt_executor, "build_bf16_rounder", lambda *a: rounder)
    model = Model(exported_tiny_256, backend="trt")
    frames = _frames(4)
    for i in range(100):
        stream = model.stream()
        stream.load_first_frame(frames[0])
        stream.add_new_prompt(0, 1, points=[[40, 35]], labels=[1])
        for f in frames[1:]:
            stream.track(f, output="result")
        assert fake_gpu.live()["device"] > 0
        stream.close()
        stream.close()  # again: nothing
        assert fake_gpu.live() == {"device": 0, "pinned": 0, "streams": 0, "events": 0, "graphs": 0}, i
    with pytest.raises(Sam2rtError, match="closed"):
        stream.track(frames[1])
    streams = [model.stream() for _ in range(5)]
    for s in streams:
        s.load_first_frame(frames[0])
    assert fake_gpu.live()["streams"] == 5
    for s in streams:
        s.close()
    assert fake_gpu.live() == {"device": 0, "pinned": 0, "streams": 0, "events": 0, "graphs": 0}
    assert not any(r.opened for r in model.engine.runners.values())


def test_dropped_allocator_stream_and_graph_are_finalized(fake_gpu: FakeCudart) -> None:
    import gc

    from sam2rt.runtime.backends.cuda import CudaAllocator, Event
    from sam2rt.runtime.backends.cuda_graph import CudaGraph

    alloc = CudaAllocator()  # its own stream
    buf = alloc.alloc((16,), np.float32, mirrored=True)
    event = Event()
    graph = CudaGraph(alloc.stream)
    assert graph.capture(lambda: alloc.upload(buf))
    assert fake_gpu.live() == {"device": 1, "pinned": 1, "streams": 1, "events": 1, "graphs": 2}
    del alloc, event, graph, buf
    gc.collect()
    assert fake_gpu.live() == {"device": 0, "pinned": 0, "streams": 0, "events": 0, "graphs": 0}


def test_bf16_rounder_build_failure_falls_back_to_float32(engine, fake_gpu: FakeCudart, monkeypatch) -> None:
    from sam2rt.runtime.backends import trt_executor

    def fail(*args):
        raise Sam2rtError("TensorRT could not build the bf16 rounding engine")

    monkeypatch.setattr(trt_executor, "build_bf16_rounder", fail)
    with pytest.warns(UserWarning, match="float32 memories"):
        assert trt_executor.rounder_or_none(256, 4, "sam2rt build M") is None
    host, device = _pair(engine, fake_gpu, rounder=False)  # no rounder: float32 bank, equal to an unrounded host
    assert not device.executor.rounds
    frames = _frames(6)
    for tracker in (host, device):
        tracker.load_first_frame(frames[0])
        tracker.add_new_prompt(0, 1, points=[[40, 35]], labels=[1])
    for f in frames[1:]:
        np.testing.assert_array_equal(host.track(f)[1], device.track(f)[1])


def test_memory_estimate_matches_what_a_stream_allocates(exported_tiny_256: Path, fake_gpu: FakeCudart,
                                                         monkeypatch, tmp_path: Path, capsys) -> None:
    """``sam2rt build``'s memory line from fake engines' own figures (scratch = the largest engine's, weights =
    the engine files), against what a live stream with 4 objects on 720p frames really allocates."""
    from sam2rt.cli import main
    from sam2rt.engines import builder, model_engines
    from sam2rt.engines.config import BuildConfig
    from sam2rt.runtime.backends import trt, trt_executor
    from sam2rt.runtime.model import Model, engine_memory

    scratch = {name: (i + 1) << 20 for i, name in enumerate(
        ["image_encoder", "memory_attention", "mask_decoder", "memory_encoder", "preprocess_vertical_first",
         "preprocess_horizontal_first", "postprocess_masks", "bf16_round"])}
    scratch["memory_attention"] = 40 << 20  # the largest: the one scratch of every context
    engines = trt_engines(fake_engines(fake_gpu, FakeGraphs(256), scratch=scratch))
    rounder = engines.pop("bf16_round")
    monkeypatch.setattr(trt, "load_engines", lambda model_dir, engine_dir=None: (engines, BuildConfig(max_objects=4)))
    monkeypatch.setattr(trt_executor, "build_bf16_rounder", lambda *a: rounder)
    (tmp_path / "image_encoder.engine").write_bytes(b"\0" * (3 << 20))
    (tmp_path / "mask_decoder.engine").write_bytes(b"\0" * (1 << 20))
    m = engine_memory(exported_tiny_256, tmp_path, frame=(720, 1280))
    assert m["engines_mib"] == 4 and m["scratch_per_stream_mib"] == 40 and m["objects"] == 4

    stream = Model(exported_tiny_256, backend="trt").stream()
    frame = np.zeros((720, 1280, 3), np.uint8)
    stream.load_first_frame(frame)
    for k in range(4):
        stream.add_new_prompt(0, k + 1, points=[[100 + 200 * k, 300]], labels=[1])
    for _ in range(3):
        stream.track(frame, output="result")
    held = sum(fake_gpu.memory[p].nbytes - 256 for p in fake_gpu.device) - stream.executor.scratch.nbytes
    estimate = m["buffers_per_stream_mib"] * 2**20
    assert held <= estimate <= 1.1 * held, (held, estimate)
    stream.close()

    monkeypatch.setattr(builder, "import_tensorrt", lambda: None)
    monkeypatch.setattr(model_engines, "build_model_engines", lambda *a, **k: None)
    assert main(["build", str(exported_tiny_256), "--out", str(tmp_path)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("device memory from the engines: 4 MiB of engines") and "40 MiB scratch" in line


@pytest.mark.parametrize("size", [(720, 1280), (300, 257), (50, 30), (64, 64)])
def test_logits_output_resize_equals_the_dense_bilinear(size: tuple[int, int]) -> None:
    """``track()``'s logits output is resized by two-tap gathers with PyTorch's taps: equal to the dense
    ``resize_bilinear`` (the official F.interpolate) to float rounding, up- and downscaling."""
    from sam2rt.runtime.imageops import resize_bilinear
    from sam2rt.runtime.outputs import resize_logits

    low = (np.random.default_rng(0).standard_normal((3, 1, 64, 64)) * 8).astype(np.float32)
    got = resize_logits(low, size)
    assert got.shape == (3, 1, *size) and got.dtype == np.float32
    np.testing.assert_allclose(got, resize_bilinear(low, size), atol=1e-5, rtol=0)


def test_bgr_frames_are_swapped_inside_preprocessing(engine, fake_gpu: FakeCudart) -> None:
    """bgr=True gives what RGB frames give, on the host executor and on the device (staging copy) alike."""
    from sam2rt.runtime.backends.executor import HostExecutor
    from sam2rt.runtime.stream import StreamTracker

    host, device = _pair(engine, fake_gpu)
    graphs = FakeGraphs(engine.size)
    host_bgr = StreamTracker(engine=engine, executor=HostExecutor(graphs.runners(), engine.size), bgr=True)
    _, device_bgr = _pair(engine, fake_gpu)
    device_bgr.bgr = True
    frames = _frames(5)
    for tracker, flip in ((host, False), (device, False), (host_bgr, True), (device_bgr, True)):
        tracker.load_first_frame(frames[0][:, :, ::-1].copy() if flip else frames[0])
        tracker.add_new_prompt(0, 1, points=[[40, 35]], labels=[1])
    for f in frames[1:]:
        ref = host.track(f)[1]
        for tracker, frame in ((device, f), (host_bgr, f[:, :, ::-1].copy()), (device_bgr, f[:, :, ::-1].copy())):
            np.testing.assert_array_equal(tracker.track(frame)[1], ref)
