"""Executor contracts on CPU (issue 10): captured graphs never outlive their buffers, errors are Sam2rtErrors.

A recording executor (HostExecutor + the key/capture bookkeeping of TrtExecutor) shows which step keys a
tracker asks for and which buffers were freed; the TensorRT executor's own logic runs against fakes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sam2rt import contract as C
from sam2rt.errors import Sam2rtError
from sam2rt.runtime.backends.cuda import Buf, HostAllocator
from sam2rt.runtime.backends.executor import HostExecutor


class RecordingExecutor(HostExecutor):
    """Replays a 'graph' (here: remembers the buffer addresses it was captured with) per (generation, key)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.graphs: dict[tuple, dict[str, int]] = {}
        self.captures: list[tuple] = []
        self.replays: list[tuple] = []
        self._current: dict[str, int] | None = None

    def run(self, graph: str, tensors: dict[str, Buf]) -> None:
        if self._current is not None:
            self._current.update({f"{graph}:{n}": b.ptr for n, b in tensors.items()})
        super().run(graph, tensors)

    def step(self, key, enqueue) -> None:
        full = (self.generation, *key)
        self._current = {}
        enqueue()
        addresses, self._current = self._current, None
        if full in self.graphs:
            # the key must determine every buffer the step binds, else a replay would use stale addresses
            assert self.graphs[full] == addresses, "a replay would use other buffers than the capture"
            self.replays.append(full)
        else:
            self.graphs[full] = addresses
            self.captures.append(full)

    def release(self, buffers) -> None:
        self.graphs = {}  # as TrtExecutor: every graph captured so far is destroyed
        super().release(buffers)


def _frames(n: int, size: int = 96) -> list[np.ndarray]:
    base = np.linspace(0, 90, size * size * 3).reshape(size, size, 3)
    out = []
    for t in range(n):
        f = base.copy()
        f[20 + t:50 + t, 25 + 2 * t:55 + 2 * t] = (230, 200, 40)
        out.append(f.astype(np.uint8))
    return out


def test_two_sessions_and_object_changes_never_replay_stale_graphs(exported_tiny_256: Path) -> None:
    from sam2rt.runtime.engine import Engine
    from sam2rt.runtime.stream import StreamTracker

    engine = Engine(exported_tiny_256, threads=1)
    ex = RecordingExecutor(engine.runners, engine.size)
    tracker = StreamTracker(engine=engine, executor=ex, fill_hole_area=0)
    frames = _frames(40)
    results = []
    for session in range(2):  # a second video: everything reallocated, no graph of the first replayed
        tracker.load_first_frame(frames[0])
        tracker.add_new_prompt(0, 1, points=[[40, 35]], labels=[1])
        gen_first = ex.generation
        for t in range(1, 38):  # one key per object count: captured on its second step, replayed from the third
            results.append(tracker.track(frames[t])[1])
            if t == 35:
                tracker.add_new_prompt(t, 2, points=[[10, 80]], labels=[1])  # object count changes: re-keyed
        assert ex.generation > gen_first
        assert tracker.remove_object(2) == [1]
        tracker.track(frames[38])
    assert ex.replays, "the steady state replays captured steps"
    assert len({k[0] for k in ex.captures}) >= 4  # generations: 2 sessions x (1 object, 2 objects, ...)
    # the two sessions saw the same frames and prompts: the same masks
    np.testing.assert_array_equal(results[0], results[37])
    np.testing.assert_array_equal(results[36], results[73])


def test_trt_executor_keys_graphs_by_generation_and_frees(monkeypatch) -> None:
    """TrtExecutor.step/release with fake CUDA graphs and a host allocator: a key is captured on its second
    consecutive run and replayed from the third; keys that keep changing are never captured; one graph lives at
    a time (a new key's capture destroys the old); release destroys it and moves the generation on; the step
    and direct contexts are the executor's own."""
    from sam2rt.runtime.backends import cuda_graph, trt_executor
    from sam2rt.runtime.backends.trt import STEP_GRAPHS

    made, closed = [], []

    class FakeGraph:
        def __init__(self, stream) -> None:
            self.ready, self.error, self.launched = False, None, 0
            made.append(self)

        def capture(self, enqueue) -> bool:
            enqueue()
            self.ready = True
            return True

        def launch(self) -> None:
            self.launched += 1

        def close(self) -> None:
            closed.append(self)

    class FakeContext:
        def __init__(self) -> None:
            self.bound = []

        def bind(self, tensors) -> None:
            self.bound.append({n: b.ptr for n, b in tensors.items()})

        def enqueue(self, stream) -> None:
            pass

    monkeypatch.setattr(cuda_graph, "CudaGraph", FakeGraph)
    ex = object.__new__(trt_executor.TrtExecutor)
    ex.stream = type("S", (), {"synchronize": lambda self: None})()
    ex.graphs = cuda_graph.GraphCache(ex.stream)
    ex.allocator = HostAllocator()
    ex.direct = {g: FakeContext() for g in ("memory_attention", "mask_decoder", "memory_encoder", "image_encoder")}
    ex.step_contexts = {g: FakeContext() for g in STEP_GRAPHS}
    ex._capturing, ex._frame = False, {}
    buf = ex.allocator.alloc((2,), np.float32)
    calls = []

    def enqueue() -> None:
        calls.append(1)
        ex.run("memory_attention", {"x": buf})

    for m in range(1, 8):  # a key that changes every step (a bank still filling up): never captured
        ex.step((1, m), enqueue)
    assert made == [] and len(calls) == 7
    ex.step((1,), enqueue)  # plain run (TensorRT's lazy setup)
    ex.step((1,), enqueue)  # plain run, then capture
    ex.step((1,), enqueue)  # replay
    assert len(made) == 1 and made[0].launched == 1 and len(calls) == 10  # 9 runs + the capture's
    assert ex.graphs.captures == 1 and ex.graphs.replays == 1
    assert ex.step_contexts["memory_attention"].bound and not ex.direct["memory_attention"].bound
    ex.run("memory_attention", {"x": buf})  # a direct run uses the direct context
    assert len(ex.direct["memory_attention"].bound) == 1
    ex.step((2,), enqueue)
    ex.step((2,), enqueue)  # another key captured: the first graph is destroyed first
    assert len(made) == 2 and closed == [made[0]] and len(ex.graphs) == 1

    class Bufs:
        freed = False
        bufs: dict = {}

        def free(self) -> None:
            self.freed = True

    bufs = Bufs()
    ex.release(bufs)
    assert bufs.freed and closed == made and ex.generation == 1 and len(ex.graphs) == 0
    ex.step((2,), enqueue)  # the same key after release: run again, not replayed
    assert len(made) == 2 and made[1].launched == 0


def test_trt_context_checks_set_tensor_address() -> None:
    from sam2rt.runtime.backends.trt import TrtContext

    class Ctx:
        def set_input_shape(self, name, shape) -> bool:
            return True

        def set_tensor_address(self, name, ptr) -> bool:
            return name != "bad"

    ctx = object.__new__(TrtContext)
    ctx.context, ctx.name = Ctx(), "mask_decoder"
    ctx.engine = type("E", (), {"inputs": ["good"], "names": ["good", "bad"], "rebuild": "sam2rt build M"})()
    buf = HostAllocator().alloc((1,), np.float32)
    with pytest.raises(Sam2rtError, match="rejected the address of 'bad'.*sam2rt build"):
        ctx.bind({"good": buf, "bad": buf})


def test_device_properties_runtime_error_becomes_sam2rt_error(monkeypatch) -> None:
    """cuda-python 12.4 raises a bare RuntimeError from cudaGetDeviceProperties without a driver."""
    from sam2rt.runtime.backends import cuda

    class FakeCudart:
        @staticmethod
        def cudaGetDeviceProperties(device):
            raise RuntimeError("Function cudaGetDeviceProperties: CUDA driver not found")

    monkeypatch.setattr(cuda, "import_cudart", lambda: FakeCudart)
    with pytest.raises(Sam2rtError, match="nvidia-smi"):
        cuda.device_properties()


def test_cuda_allocator_zero_fills_on_its_stream(monkeypatch) -> None:
    """New buffers are zeroed with cudaMemsetAsync on the allocator's stream (not the legacy stream)."""
    from sam2rt.runtime.backends import cuda

    calls = []

    class FakeCudart:
        class cudaError_t:
            cudaSuccess = 0

        cudaStreamNonBlocking = 1

        @staticmethod
        def cudaStreamCreateWithFlags(flags):
            return 0, 77

        @staticmethod
        def cudaMalloc(n):
            return 0, 4096

        @staticmethod
        def cudaMemsetAsync(ptr, value, n, stream):
            calls.append(("async", ptr, n, stream))
            return (0,)

        @staticmethod
        def cudaMemset(ptr, value, n):
            calls.append(("legacy", ptr, n))
            return (0,)

        @staticmethod
        def cudaStreamSynchronize(stream):
            return (0,)

        @staticmethod
        def cudaFree(ptr):
            calls.append(("free", ptr))
            return (0,)

        @staticmethod
        def cudaStreamDestroy(stream):
            calls.append(("stream destroyed", stream))
            return (0,)

    monkeypatch.setattr(cuda, "import_cudart", lambda: FakeCudart)
    alloc = cuda.CudaAllocator()
    buf = alloc.alloc((4, 4), np.float32)
    assert calls == [("async", 4096, 64, 77)]
    alloc.free(buf)
    assert calls[-1] == ("free", 4096) and alloc.allocated == 0
    alloc.close()  # its own stream goes with it
    assert calls[-1] == ("stream destroyed", 77)


def test_one_model_many_streams_are_independent(exported_tiny_256: Path) -> None:
    """Two streams of one loaded model, interleaved, give what each gives alone; graphs are loaded once."""
    from sam2rt.runtime.model import load

    model = load(exported_tiny_256, threads=1)
    a, b = model.stream(fill_hole_area=0), model.stream(fill_hole_area=0)
    assert a.engine is b.engine and a.executor is not b.executor
    frames, other = _frames(5), _frames(5)[::-1]
    a.load_first_frame(frames[0])
    a.add_new_prompt(0, 1, points=[[40, 35]], labels=[1])
    b.load_first_frame(other[0])
    b.add_new_prompt(0, 7, points=[[60, 60]], labels=[1])
    b.add_new_prompt(0, 8, points=[[10, 10]], labels=[1])
    mixed = [(a.track(fa)[1], b.track(fb)[1]) for fa, fb in zip(frames[1:], other[1:])]
    alone = model.stream(fill_hole_area=0)
    alone.load_first_frame(frames[0])
    alone.add_new_prompt(0, 1, points=[[40, 35]], labels=[1])
    for (ma, mb), f in zip(mixed, frames[1:]):
        np.testing.assert_array_equal(ma, alone.track(f)[1])
        assert mb.shape[0] == 2
    assert a.stored_bytes() == model.stream_bytes(objects=1)
    assert model.stream_bytes(objects=4) > model.stream_bytes(objects=1)


def test_trt_executor_rounds_the_bank_through_scratch() -> None:
    """round_bank binds the slot as input and a scratch view as output (no aliasing), then copies back."""
    from sam2rt.runtime.backends import trt_executor
    from sam2rt.runtime.imageops import bf16_round_

    class FakeRounder:
        def bind(self, tensors) -> None:
            assert tensors["memory_in"].ptr != tensors["memory_out"].ptr
            self.tensors = tensors

        def enqueue(self, stream) -> None:  # what the strongly typed cast engine computes
            out = self.tensors["memory_out"].array
            np.copyto(out, self.tensors["memory_in"].array)
            bf16_round_(out)

    ex = object.__new__(trt_executor.TrtExecutor)
    ex.allocator, ex.stream, ex.rounds, ex._capturing = HostAllocator(), None, True, False
    ex.direct = {trt_executor.ROUNDER: FakeRounder()}
    ex._round_scratch = ex.allocator.alloc((4, 16, 64), np.float32)
    memory = ex.allocator.alloc((3, 2, 16, 64), np.float32)
    memory.array[...] = np.random.default_rng(0).standard_normal(memory.shape)
    expected = bf16_round_(memory.array[1].copy())
    ex.round_bank(memory.slot(1))
    np.testing.assert_array_equal(memory.array[1], expected)
    assert not np.array_equal(memory.array[0], bf16_round_(memory.array[0].copy()))  # other slots untouched


class _RecordingAllocator(HostAllocator):
    """A host allocator that records which buffers cross between host and device."""

    def __init__(self) -> None:
        self.uploads: list[tuple] = []
        self.downloads: list[tuple] = []

    def upload(self, buf: Buf, stream=None) -> None:
        self.uploads.append(buf.shape)

    def download(self, buf: Buf, stream=None) -> None:
        self.downloads.append(buf.shape)


class _FakePostprocess:
    """What the postprocessing engine computes, on the bound host-backed buffers (its ONNX graph is checked
    against threshold_resize in tests/engines/test_postprocess.py)."""

    def __init__(self) -> None:
        self.bound: list[dict[str, Buf]] = []

    def bind(self, tensors: dict[str, Buf]) -> None:
        assert set(tensors) == {t.name for t in C.POSTPROCESS.inputs + C.POSTPROCESS.outputs}
        self.bound.append(dict(tensors))

    def enqueue(self, stream) -> None:
        t = self.bound[-1]
        logits = t["resize_rows"].array @ t["low_res_masks"].array @ t["resize_cols"].array  # (K, 1, H', W')
        np.copyto(t["masks"].array, logits[:, 0] > 0)


def _masks_executor(context=None, max_side: int = 4096):
    from sam2rt.runtime.backends import trt_executor
    from sam2rt.runtime.backends.device_masks import DeviceMasks

    ex = object.__new__(trt_executor.TrtExecutor)
    ex.allocator, ex.stream = _RecordingAllocator(), None
    ex.post = DeviceMasks(ex.allocator, ex.stream, context, 64, max_side)
    return ex


def test_trt_executor_masks_bind_the_step_logits_and_download_only_the_masks() -> None:
    """TrtExecutor.masks with a fake engine: binds the step's low_res_masks buffer and the (H', h4) / (h4, W')
    weights (uploaded once per size), downloads only the (K, H', W') masks; equal to threshold_resize."""
    from sam2rt.runtime.outputs import threshold_resize

    post = _FakePostprocess()
    ex = _masks_executor(post)
    step = ex.allocator.alloc((3, 1, 64, 64), np.float32, mirrored=True)
    step.array[...] = np.random.default_rng(0).standard_normal(step.shape) * 4
    got = ex.masks(step.array.copy(), (72, 128), bool, device=step)
    np.testing.assert_array_equal(got, threshold_resize(step.array, (72, 128)))
    bound = post.bound[-1]
    assert bound["low_res_masks"].ptr == step.ptr  # the device logits themselves: no upload of them
    assert bound["resize_rows"].shape == (72, 64) and bound["resize_cols"].shape == (64, 128)
    assert bound["masks"].shape == (3, 72, 128) and bound["masks"].dtype == np.bool_
    assert sorted(ex.allocator.uploads) == [(64, 128), (72, 64)]  # the weights, once
    assert ex.allocator.downloads == [(3, 72, 128)]
    ex.allocator.uploads.clear()
    got = ex.masks(step.array.copy(), (72, 128), np.uint8, device=step)  # same size: nothing uploaded
    assert ex.allocator.uploads == [] and got.dtype == np.uint8 and set(np.unique(got)) <= {0, 1}
    np.testing.assert_array_equal(got, threshold_resize(step.array, (72, 128), np.uint8))


def test_trt_executor_masks_upload_filled_logits_and_fall_back_on_the_host() -> None:
    """Without a device buffer (holes filled on the host) the logits are uploaded; sizes beyond the profile
    and engine directories without the postprocessing engine use the host's threshold_resize (warned)."""
    from sam2rt.runtime.outputs import threshold_resize

    post = _FakePostprocess()
    ex = _masks_executor(post, max_side=256)
    low = (np.random.default_rng(1).standard_normal((2, 1, 64, 64)) * 4).astype(np.float32)
    got = ex.masks(low, (30, 50), bool)
    np.testing.assert_array_equal(got, threshold_resize(low, (30, 50)))
    assert (2, 1, 64, 64) in ex.allocator.uploads and ex.allocator.downloads == [(2, 30, 50)]
    calls = len(post.bound)
    np.testing.assert_array_equal(ex.masks(low, (300, 50), bool), threshold_resize(low, (300, 50)))
    assert len(post.bound) == calls  # beyond max_side: on the host
    old = _masks_executor(None)
    with pytest.warns(UserWarning, match="rebuild the engines"):
        np.testing.assert_array_equal(old.masks(low, (30, 50), bool), threshold_resize(low, (30, 50)))
