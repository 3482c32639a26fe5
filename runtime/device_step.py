"""``DeviceTracker``: steady-state tracking with the memory bank resident in the backend's memory.

Prompts go through a :class:`~sam2rt.runtime.stream.StreamTracker` (the official prompt logic, rare calls).
From the first ``track`` on, each frame is: frame in -> preprocessing -> image encoder -> [control arrays up
-> memory attention -> decoder (obj_ptr into its pointer slot) -> memory encoder (into its memory slot) ->
masks down]; the bracketed step is what a GPU executor captures as a CUDA graph per object count and ring
position, and replays. Only the frame goes up and the masks come down.

Executors run a graph with every tensor bound to a :class:`~sam2rt.runtime.cuda.Buf`:
:class:`HostExecutor` (numpy buffers, any :class:`GraphRunner`; what the tests run on ONNX Runtime CPU) and
``trt_backend.TrtExecutor`` (device buffers, TensorRT contexts, one stream).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sam2rt import contract as C
from sam2rt.errors import Sam2rtError
from sam2rt.runtime.backends import GraphRunner
from sam2rt.runtime.bank import SelectionRules, from_bf16_bits
from sam2rt.runtime.device_bank import ALIASES, MIRRORED, DeviceBank, plan_step
from sam2rt.runtime.cuda import Buf, HostAllocator
from sam2rt.runtime.imageops import bf16_round_, fill_holes, preprocess_official
from sam2rt.runtime.stream import StreamTracker


class Executor(Protocol):
    """What the device step needs from a backend."""

    allocator: Any

    def preprocess(self, rgb: np.ndarray, image: Buf) -> None:
        """(H, W, 3) uint8 RGB frame -> the (1, 3, S, S) float32 ``image`` buffer."""

    def run(self, graph: str, tensors: dict[str, Buf]) -> None:
        """Enqueue ``graph`` with each input/output name bound to its buffer."""

    def step(self, key: tuple[int, ...], enqueue: Any) -> None:
        """Run ``enqueue`` (the steady-state step), replaying a captured graph for ``key`` where possible."""

    def round_bank(self, slot: Buf) -> None:
        """Round a freshly written memory slot to bfloat16 as the official bank stores it (or not)."""

    def synchronize(self) -> None:
        """Wait for the enqueued work."""


class HostExecutor:
    """Runs the step with numpy buffers through any graph runners (ONNX Runtime CPU in tests).

    round_bf16: round each written memory slot to bfloat16 like the official predictor (and the host path).
    """

    def __init__(self, runners: dict[str, GraphRunner], image_size: int, round_bf16: bool = True) -> None:
        self.runners, self.image_size, self.round_bf16 = runners, image_size, round_bf16
        self.allocator = HostAllocator()

    def preprocess(self, rgb: np.ndarray, image: Buf) -> None:
        np.copyto(image.array, preprocess_official(rgb, self.image_size))

    def run(self, graph: str, tensors: dict[str, Buf]) -> None:
        spec = C.GRAPHS_BY_NAME[graph]
        self.runners[graph].run({t.name: tensors[t.name].array for t in spec.inputs},
                                out={t.name: tensors[t.name].array for t in spec.outputs})

    def step(self, key: tuple[int, ...], enqueue: Any) -> None:
        enqueue()

    def round_bank(self, slot: Buf) -> None:
        if self.round_bf16:
            bf16_round_(slot.array)

    def synchronize(self) -> None:
        """Synchronous."""


class DeviceTracker:
    """A stream tracker whose tracking steps keep the memory bank in the executor's memory.

    Same calls as :class:`StreamTracker` for a session prompted on its first frame: ``load_first_frame``,
    ``add_new_prompt`` (on frame 0, any number of objects), then ``track(frame)`` for each new frame.
    Prompts after frame 0 need the host bank: use ``StreamTracker`` for those sessions.

    executor: None = :class:`HostExecutor` over the prompt tracker's runners (numpy bank), or with
    backend "trt" the ``TrtExecutor`` over the same deserialised engines (device bank, CUDA graphs).
    """

    def __init__(self, model_dir: str | Path, backend: str = "ort", executor: Executor | None = None,
                 fill_hole_area: int | None = None, threads: int = 0, **backend_options: Any) -> None:
        self.prompts = StreamTracker(model_dir, backend=backend, threads=threads, fill_hole_area=fill_hole_area,
                                     **backend_options)
        self.engine = self.prompts.engine
        if executor is None and backend == "trt":
            from sam2rt.runtime.trt_backend import executor_for

            executor = executor_for(self.engine.runners)
        self.executor = executor or HostExecutor(self.engine.runners, self.engine.size)
        self.rules: SelectionRules = self.prompts.predictor.rules
        self.fill_hole_area = self.prompts.predictor.fill_hole_area
        self.bank: DeviceBank | None = None
        self.buffers: dict[str, Buf] = {}
        self._frame = 0
        self._size: tuple[int, int] | None = None

    # ---- prompts (host) ----------------------------------------------------------------------------
    def load_first_frame(self, frame: np.ndarray) -> None:
        """frame: (H, W, 3) uint8 RGB. Starts a new session."""
        self.prompts.load_first_frame(frame)
        self.bank, self._frame, self._size = None, 0, frame.shape[:2]

    def add_new_prompt(self, frame_idx: int, obj_id: int, **prompt: Any) -> tuple[int, list[int], np.ndarray]:
        """Clicks/box/mask on frame 0 (see ``StreamTracker.add_new_prompt``); masks (K, 1, H, W) float32."""
        if self.bank is not None or frame_idx != 0:
            raise Sam2rtError("DeviceTracker takes prompts on the first frame only, before tracking starts; "
                              "use StreamTracker to prompt later frames")
        return self.prompts.add_new_prompt(frame_idx, obj_id, **prompt)

    @property
    def obj_ids(self) -> list[int]:
        return self.prompts.obj_ids

    # ---- tracking (device) -------------------------------------------------------------------------
    def track(self, frame: np.ndarray) -> tuple[list[int], np.ndarray]:
        """Track every object on the next frame; returns ``(obj_ids, logits (K, 1, H, W) float32)``."""
        if self.bank is None:
            self._start()
        rgb = self.prompts._to_rgb(frame, self._size)
        self._frame += 1
        t, buf = self._frame, self.buffers
        self.executor.preprocess(rgb, buf["image"])
        self.executor.run("image_encoder", buf)
        mem_slot, ptr_slot = self.bank.prepare(t)
        tensors = {**buf, "memory": buf["memory"], "obj_ptr": buf["obj_ptrs"].slot(ptr_slot)}
        write = {**tensors, "memory": buf["memory"].slot(mem_slot)}

        def enqueue() -> None:
            for name in ("memory_valid", "memory_tpos", "obj_ptr_valid", "obj_ptr_tpos"):
                self.executor.allocator.upload(buf[name], getattr(self.executor, "stream", None))
            self.executor.run("memory_attention", tensors)
            self.executor.run("mask_decoder", {**tensors, "image_embed": buf["conditioned_feat"]})
            self.executor.run("memory_encoder", {**write, "mask_logits": buf["low_res_masks"]})
            self.executor.round_bank(write["memory"])
            for name in ("low_res_masks", "object_score_logits"):
                self.executor.allocator.download(buf[name], getattr(self.executor, "stream", None))

        self.executor.step((self.bank.batch, mem_slot, ptr_slot), enqueue)
        self.executor.synchronize()
        self.bank.commit(t)
        masks = buf["low_res_masks"].mirror  # (B, 1, 4h, 4h)
        masks = fill_holes(masks, self.fill_hole_area) if self.fill_hole_area > 0 else masks.copy()
        H, W = self._size
        return self.obj_ids, self.engine.to_video_res(masks, H, W)

    def _start(self) -> None:
        """Move the prompts' conditioning memories and pointers into a freshly planned bank."""
        state = self.prompts._require_state()
        if not state["obj_ids"]:
            raise Sam2rtError("no object to track; add one with add_new_prompt(...) on the first frame")
        self.prompts.predictor.propagate_in_video_preflight(state)  # encodes the prompt frames' memories
        K, alloc = len(state["obj_ids"]), self.executor.allocator
        plan = plan_step(self.engine.manifest.bank, self.engine.size, K)
        self.buffers = {n: alloc.alloc(p.shape, p.dtype, mirrored=n in MIRRORED) for n, p in plan.items()}
        self.bank = DeviceBank(self.buffers, self.engine.manifest.bank, self.rules)
        self._constant_inputs(K)
        for b in range(K):
            cond_out = state["output_dict_per_obj"][b].cond
            for frame_idx, out in cond_out.items():
                slot = self.bank.add_cond(b, frame_idx)
                memory = np.empty(out.memory.shape, np.float32)  # (hw, 64)
                from_bf16_bits(out.memory, memory)
                _write(alloc, self.buffers["memory"].slot(slot), b, memory, self.executor)
                _write(alloc, self.buffers["obj_ptrs"].slot(slot), b, out.obj_ptr, self.executor)

    def _constant_inputs(self, K: int) -> None:
        """Tracking feeds no prompt: one padding point, no mask input, the model's multimask rule."""
        buf, h4 = self.buffers, 4 * self.engine.h
        values = {"point_coords": np.zeros((K, 1, 2), np.float32), "point_labels": np.full((K, 1), -1, np.int32),
                  "mask_input": np.zeros((K, 1, h4, h4), np.float32), "has_mask_input": np.zeros(K, np.bool_),
                  "multimask": np.full(K, self.engine.use_multimask(False, 0)), "binarize": np.zeros(K, np.bool_)}
        for name, value in values.items():
            np.copyto(buf[name].mirror, value)
            self.executor.allocator.upload(buf[name], getattr(self.executor, "stream", None))


def _write(alloc: Any, slot: Buf, b: int, value: np.ndarray, executor: Any) -> None:
    """Write one object's column ``slot[b]`` from the host (prompt memories: rare, outside the steady state)."""
    column = slot.slot(b)
    if column.array is not None:
        np.copyto(column.array, value)
        return
    staged = Buf(column.ptr, column.shape, column.dtype, None, alloc.pinned(column.shape, column.dtype))
    np.copyto(staged.mirror, value)
    alloc.upload(staged, executor.stream)
