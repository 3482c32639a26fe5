"""Executors and buffer sets: what the one ``StreamTracker`` runs its graphs through.

Every tensor the tracker binds is a :class:`~sam2rt.runtime.backends.cuda.Buf` made by the executor's allocator, so
one code path serves every backend: :class:`HostExecutor` (numpy buffers, any :class:`GraphRunner`; ONNX
Runtime CPU and the tests) and ``trt_backend.TrtExecutor`` (device buffers, its own TensorRT contexts, one
CUDA stream, CUDA graphs). Buffers are grouped in :class:`BufferSet` s that are allocated and freed together;
whenever one is freed the executor's ``generation`` moves on and every captured graph is dropped, because a
captured graph holds the addresses it was captured with.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Protocol

import numpy as np

from sam2rt import contract as C
from sam2rt.errors import Sam2rtError
from sam2rt.runtime.backends.runner import GraphRunner
from sam2rt.runtime.backends.cuda import Buf, HostAllocator
from sam2rt.runtime.imageops import bf16_round_, preprocessor

# The per-frame image tensors (independent of the object count). Frame t's memory is encoded during frame t+1's
# step (so a correction on frame t still sees frames t-6..t-1), after frame t+1's image encoder has run: the
# current frame's feature is in vision_feat, the previous frame's in vision_feat_prev (a device copy before each
# frame's image encoder), so the step binds the same two addresses on every frame.
FRAME_TENSORS = {"image": ((1, 3, "S", "S"), "float32"), "vision_feat": ((1, C.HIDDEN_DIM, "h", "h"), "float32"),
                 "vision_feat_prev": ((1, C.HIDDEN_DIM, "h", "h"), "float32"),
                 "feat_s0": ((1, 32, "h4", "h4"), "float32"),
                 "feat_s1": ((1, 64, "h2", "h2"), "float32")}
# Per-object tensors of the tracking step, from the contract: every tensor with the object dim B of memory
# attention, the decoder and the memory encoder (memory and pointers slot-major). The decoder's image_embed
# is conditioned_feat and the memory encoder's mask_logits is low_res_masks (one buffer, two names); the
# memory encoder's memory output is written into a slot of the bank, not into a buffer of its own.
_ALIASED = {("mask_decoder", "image_embed"), ("memory_encoder", "mask_logits"), ("memory_encoder", "memory")}
OBJECT_TENSORS = {t.name: (t.shape, t.dtype)
                  for g in (C.MEMORY_ATTENTION, C.MASK_DECODER, C.MEMORY_ENCODER) for t in g.inputs + g.outputs
                  if "B" in t.shape and (g.name, t.name) not in _ALIASED}
# What the host writes (controls, prompts) or reads (results): these get pinned mirrors on a GPU.
MIRRORED = ("memory_valid", "memory_tpos", "obj_ptr_valid", "obj_ptr_tpos", "point_coords", "point_labels",
            "mask_input", "has_mask_input", "multimask", "binarize", "low_res_masks", "object_score_logits",
            "obj_ptr", "image")
CONTROLS = ("memory_valid", "memory_tpos", "obj_ptr_valid", "obj_ptr_tpos")
SLOTTED = ("memory", "obj_ptrs")  # (slots, B, ...): object b is column b of every slot


def resolve(shape: tuple, dims: dict[str, int]) -> tuple[int, ...]:
    return tuple(int(dims[d]) if isinstance(d, str) else int(d) for d in shape)


def planned_bytes(specs: dict[str, tuple[tuple, str]], dims: dict[str, int]) -> int:
    """Bytes a BufferSet of ``specs`` takes (e.g. OBJECT_TENSORS at 1024 px, 1 object: 10.6 MiB of bank)."""
    return sum(int(np.prod(resolve(shape, dims), dtype=np.int64)) * np.dtype(dtype).itemsize
               for shape, dtype in specs.values())


class BufferSet:
    """Named buffers allocated together by one allocator and freed together (``free``)."""

    def __init__(self, allocator: Any, specs: dict[str, tuple[tuple, str]], dims: dict[str, int]) -> None:
        self.allocator, self.dims = allocator, dict(dims)
        self.bufs: dict[str, Buf] = {name: allocator.alloc(resolve(shape, dims), dtype, mirrored=name in MIRRORED)
                                     for name, (shape, dtype) in specs.items()}

    def __getitem__(self, name: str) -> Buf:
        return self.bufs[name]

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.bufs.values())

    def free(self) -> None:
        for buf in self.bufs.values():
            self.allocator.free(buf)
        self.bufs = {}


def relayout(old: BufferSet | None, new: BufferSet, keep: Iterable[tuple[int, int]]) -> None:
    """Copy object columns ``old b -> new b'`` for each pair of ``keep`` (memory-side, no host round trip)."""
    if old is None:
        return
    copy = new.allocator.copy
    for b_old, b_new in keep:
        for name in SLOTTED:
            for slot in range(new[name].shape[0]):
                copy(new[name].slot(slot).slot(b_new), old[name].slot(slot).slot(b_old))
        for name in ("low_res_masks", "obj_ptr", "object_score_logits"):
            copy(new[name].slot(b_new), old[name].slot(b_old))
        new["binarize"].mirror[b_new] = old["binarize"].mirror[b_old]


class Executor(Protocol):
    """What the tracker needs from a backend."""

    allocator: Any
    generation: int

    def preprocess(self, rgb: np.ndarray, image: Buf, bgr: bool = False) -> None:
        """(H, W, 3) uint8 RGB (or BGR) frame -> the (1, 3, S, S) float32 ``image`` buffer."""

    def run(self, graph: str, tensors: dict[str, Buf]) -> None:
        """Enqueue ``graph`` with each input/output name bound to its buffer (no capture)."""

    def step(self, key: tuple[int, ...], enqueue: Callable[[], None]) -> None:
        """Run ``enqueue`` (the steady-state step), replaying a graph captured for (generation, key) if any."""

    def round_bank(self, slot: Buf) -> None:
        """Round a freshly written memory slot to bfloat16 as the official bank stores it."""

    def release(self, buffers: BufferSet) -> None:
        """Free ``buffers``; graphs captured with their addresses are dropped (the generation moves on)."""

    def synchronize(self) -> None:
        """Wait for the enqueued work."""

    def close(self) -> None:
        """Free everything the executor holds (graphs, buffers, streams); it is not used again."""


class HostExecutor:
    """Runs the graphs on numpy buffers through any graph runners (ONNX Runtime CPU, tests).

    round_bf16: round each written memory slot to bfloat16 like the official predictor.
    """

    def __init__(self, runners: dict[str, GraphRunner], image_size: int, round_bf16: bool = True,
                 preprocess: str = "official") -> None:
        self.runners, self.image_size, self.round_bf16 = runners, image_size, round_bf16
        self._preprocess = preprocessor(preprocess)
        self.allocator = HostAllocator()
        self.generation = 0

    def preprocess(self, rgb: np.ndarray, image: Buf, bgr: bool = False) -> None:
        np.copyto(image.array, self._preprocess(rgb, self.image_size, bgr))

    def run(self, graph: str, tensors: dict[str, Buf]) -> None:
        spec = C.GRAPHS_BY_NAME[graph]
        self.runners[graph].run({t.name: tensors[t.name].array for t in spec.inputs},
                                out={t.name: tensors[t.name].array for t in spec.outputs})

    def step(self, key: tuple[int, ...], enqueue: Callable[[], None]) -> None:
        enqueue()

    def round_bank(self, slot: Buf) -> None:
        if self.round_bf16:
            bf16_round_(slot.array)

    def release(self, buffers: BufferSet) -> None:
        buffers.free()
        self.generation += 1

    def synchronize(self) -> None:
        """Synchronous."""

    def close(self) -> None:
        """numpy buffers: nothing held beyond the tracker's buffer sets."""


def default_executor(runners: dict[str, GraphRunner], image_size: int, backend: str,
                     preprocess: str = "official") -> Executor:
    """The executor a tracker on ``backend`` runs on: TensorRT's (device buffers, GPU preprocessing) for
    "trt", the host executor (numpy buffers, ``preprocess`` "official" or "fast") for the others."""
    if backend != "trt":
        return HostExecutor(runners, image_size, preprocess=preprocess)
    if preprocess != "official":
        raise Sam2rtError(f"preprocess={preprocess!r} applies to the ONNX Runtime backends; on TensorRT frames are "
                          "resized on the GPU, exactly as the official predictor does (preprocess=\"official\")")
    from sam2rt.runtime.backends.trt import executor_for

    return executor_for(runners)
