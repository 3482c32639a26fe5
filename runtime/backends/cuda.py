"""A thin layer over cuda-python, and the buffer abstraction the device-resident runtime is written against.

Every tensor of the device path is a :class:`Buf` (address, shape, dtype) made by an allocator:
:class:`CudaAllocator` (device memory; pinned host mirrors for what crosses to the host) on a GPU, or
:class:`HostAllocator` (numpy arrays) anywhere, so the bank bookkeeping and buffer planning run and are tested
on CPU with the same code. cuda-python is imported only by ``import_cudart`` (NVIDIA's maintained bindings,
wheels for x86_64 and aarch64); each call returns a tuple whose first item is the error code, checked here.
"""

from __future__ import annotations

import ctypes
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sam2rt.errors import Sam2rtError

INSTALL_CUDA = ('cuda-python is not installed: pip install "sam2rt[trt]" (or pip install cuda-python); it needs an '
                "NVIDIA driver and a CUDA GPU")


def import_cudart() -> Any:
    """The CUDA runtime bindings: ``cuda.bindings.runtime`` (cuda-python 12.6+ and 13.x, where the old
    ``cuda.cudart`` is gone) or ``cuda.cudart`` (cuda-python 12.0-12.5)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise Sam2rtError(INSTALL_CUDA) from None
    return cudart


def check(result: Any, what: str) -> Any:
    """Unpack a cuda-python result ``(err, *values)``; raise a Sam2rtError naming ``what`` on failure."""
    cudart = import_cudart()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        _, text = cudart.cudaGetErrorString(err)
        text = text.decode() if isinstance(text, bytes) else text
        hint = "; is an NVIDIA GPU present and its driver loaded (nvidia-smi)?" if what == "device query" else ""
        raise Sam2rtError(f"CUDA {what} failed: {getattr(err, 'name', err)}: {text}{hint}")
    return values[0] if len(values) == 1 else tuple(values)


def device_properties(device: int = 0) -> tuple[str, int, int]:
    """(name, compute capability major, minor) of a GPU; Sam2rtError where there is no usable GPU/driver."""
    cudart = import_cudart()
    try:
        result = cudart.cudaGetDeviceProperties(device)
    except RuntimeError as e:  # cuda-python 12.4 raises (instead of returning an error code) without a driver
        raise Sam2rtError(f"CUDA device query failed: {e}; is an NVIDIA GPU present and its driver loaded "
                          "(nvidia-smi)?") from None
    prop = check(result, "device query")
    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return name.strip("\x00 "), int(prop.major), int(prop.minor)


def memory_info() -> dict[str, float]:
    """Device memory in MiB: {"free_mb", "total_mb", "used_mb"}."""
    free, total = check(import_cudart().cudaMemGetInfo(), "memory query")
    return {"free_mb": free / 2**20, "total_mb": total / 2**20, "used_mb": (total - free) / 2**20}


# --------------------------------------------------------------------------- buffers


@dataclass
class Buf:
    """A tensor in memory: ``ptr`` (device or host address), shape, numpy dtype.

    ``array`` is the numpy view of host-backed memory (HostAllocator) and None for device memory.
    ``mirror`` is a pinned host array of the same shape for buffers that cross to/from the host.
    """

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype
    array: np.ndarray | None = None
    mirror: np.ndarray | None = field(default=None, repr=False)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def slot(self, index: int) -> "Buf":
        """The contiguous sub-tensor ``self[index]`` (a memory-bank slot: (B, hw, 64) of (M, B, hw, 64))."""
        assert 0 <= index < self.shape[0], f"slot {index} of {self.shape}"
        step = self.nbytes // self.shape[0]
        return Buf(self.ptr + index * step, self.shape[1:], self.dtype,
                   None if self.array is None else self.array[index],
                   None if self.mirror is None else self.mirror[index])

    def prefix(self, count: int) -> "Buf":
        """The first ``count`` entries along axis 0 (contiguous in slot-major layout)."""
        assert 1 <= count <= self.shape[0]
        return Buf(self.ptr, (count, *self.shape[1:]), self.dtype, None if self.array is None else self.array[:count],
                   None if self.mirror is None else self.mirror[:count])

    def view(self, shape: tuple[int, ...]) -> "Buf":
        """The first ``prod(shape)`` elements seen as ``shape`` (a smaller tensor in a capacity buffer)."""
        size = int(np.prod(shape, dtype=np.int64))
        assert size * self.dtype.itemsize <= self.nbytes, f"{shape} does not fit in {self.shape}"
        flat = lambda a: None if a is None else a.reshape(-1)[:size].reshape(shape)  # noqa: E731
        return Buf(self.ptr, tuple(shape), self.dtype, flat(self.array), flat(self.mirror))


class HostAllocator:
    """numpy memory behind the Buf interface: the device path's bookkeeping on CPU (tests, ONNX Runtime CPU).

    Each allocation's memory is its own mirror, so uploads and downloads are no-ops and copies are numpy.
    """

    device = False
    stream = None

    def alloc(self, shape: tuple[int, ...], dtype: Any, mirrored: bool = False) -> Buf:
        array = np.zeros(shape, np.dtype(dtype))
        return Buf(array.ctypes.data, tuple(shape), array.dtype, array, array if mirrored else None)

    def upload(self, buf: Buf, stream: Any = None) -> None:
        """Host mirror -> memory: nothing to do when the memory is the mirror."""

    def download(self, buf: Buf, stream: Any = None) -> None:
        """Memory -> host mirror: nothing to do when the memory is the mirror."""

    def copy(self, dst: Buf, src: Buf, stream: Any = None) -> None:
        """Memory -> memory (same byte count)."""
        assert dst.nbytes == src.nbytes, f"copy of {src.shape} into {dst.shape}"
        np.copyto(dst.array.reshape(-1), src.array.reshape(-1))

    def free(self, buf: Buf) -> None:
        """numpy frees the array when the last view goes."""

    def synchronize(self, stream: Any = None) -> None:
        """Host work is synchronous."""

    def close(self) -> None:
        """Nothing held."""


class CudaAllocator:
    """cudaMalloc'd device buffers, each with an optional pinned (cudaMallocHost) host mirror.

    Every copy and the zero-fill of new buffers go on ``stream`` (the one stream of the executor): a
    non-blocking stream does not wait for the legacy default stream, so a synchronous ``cudaMemset`` there
    could still be running when the first kernel reads the buffer. ``free`` returns one buffer (and its mirror)
    at once (after synchronising the stream); ``close`` returns everything.
    """

    device = True

    def __init__(self, stream: "Stream | None" = None) -> None:
        self._cudart = import_cudart()
        self._own_stream = stream is None  # a stream made here is destroyed with the allocator
        self.stream = stream if stream is not None else Stream()
        self._device: set[int] = set()
        self._pinned: set[int] = set()
        # a dropped allocator still returns its memory (the sets are shared with the finalizer, not copied)
        self._finalizer = weakref.finalize(self, _free_all, self._cudart, self._device, self._pinned)

    def alloc(self, shape: tuple[int, ...], dtype: Any, mirrored: bool = False) -> Buf:
        dtype = np.dtype(dtype)
        nbytes = max(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, 1)
        ptr = int(check(self._cudart.cudaMalloc(nbytes), f"cudaMalloc of {nbytes} bytes"))
        self._device.add(ptr)
        check(self._cudart.cudaMemsetAsync(ptr, 0, nbytes, self.stream.raw), "cudaMemsetAsync")
        mirror = self.pinned(shape, dtype) if mirrored else None
        return Buf(ptr, tuple(shape), dtype, None, mirror)

    def pinned(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A page-locked host array (fast, asynchronous and graph-capturable copies)."""
        dtype = np.dtype(dtype)
        nbytes = max(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, 1)
        ptr = int(check(self._cudart.cudaMallocHost(nbytes), f"cudaMallocHost of {nbytes} bytes"))
        self._pinned.add(ptr)
        raw = (ctypes.c_byte * nbytes).from_address(ptr)
        return np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape, dtype=np.int64))).reshape(shape)

    def _stream(self, stream: Any) -> Any:
        return (stream if stream is not None else self.stream).raw

    def upload(self, buf: Buf, stream: Any = None) -> None:
        """Pinned mirror -> device, asynchronous on the stream."""
        assert buf.mirror is not None, "upload needs a mirrored buffer"
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        check(self._cudart.cudaMemcpyAsync(buf.ptr, buf.mirror.ctypes.data, buf.nbytes, kind, self._stream(stream)),
              "host-to-device copy")

    def download(self, buf: Buf, stream: Any = None) -> None:
        """Device -> pinned mirror, asynchronous on the stream (synchronise before reading the mirror)."""
        assert buf.mirror is not None, "download needs a mirrored buffer"
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        check(self._cudart.cudaMemcpyAsync(buf.mirror.ctypes.data, buf.ptr, buf.nbytes, kind, self._stream(stream)),
              "device-to-host copy")

    def copy(self, dst: Buf, src: Buf, stream: Any = None) -> None:
        """Device -> device, asynchronous."""
        assert dst.nbytes == src.nbytes, f"copy of {src.shape} into {dst.shape}"
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        check(self._cudart.cudaMemcpyAsync(dst.ptr, src.ptr, src.nbytes, kind, self._stream(stream)), "device copy")

    def free(self, buf: Buf) -> None:
        """Return ``buf``'s device memory and pinned mirror (the whole allocation: pass what ``alloc`` gave)."""
        self.stream.synchronize()  # no queued work may still use it
        if buf.ptr in self._device:
            self._device.discard(buf.ptr)
            check(self._cudart.cudaFree(buf.ptr), "cudaFree")
        if buf.mirror is not None and buf.mirror.ctypes.data in self._pinned:
            self._pinned.discard(buf.mirror.ctypes.data)
            check(self._cudart.cudaFreeHost(buf.mirror.ctypes.data), "cudaFreeHost")

    def synchronize(self, stream: Any = None) -> None:
        (stream if stream is not None else self.stream).synchronize()

    @property
    def allocated(self) -> int:
        """Device allocations held (for tests and the GPU check)."""
        return len(self._device)

    @property
    def pinned_allocated(self) -> int:
        """Pinned host allocations held."""
        return len(self._pinned)

    def close(self) -> None:
        """Return every device and pinned allocation (after the queued work); a stream made here is destroyed."""
        if self._device or self._pinned:
            self.stream.synchronize()
        _free_all(self._cudart, self._device, self._pinned)
        if self._own_stream:
            self.stream.close()


def _free_all(cudart: Any, device: set[int], pinned: set[int]) -> None:
    """cudaFree/cudaFreeHost everything in the two sets and empty them (also the allocator's finalizer)."""
    for ptr in list(device):
        cudart.cudaFree(ptr)
    for ptr in list(pinned):
        cudart.cudaFreeHost(ptr)
    device.clear()
    pinned.clear()


# --------------------------------------------------------------------------- streams, events, graphs


class Stream:
    """One CUDA stream (non-blocking); ``handle`` is what TensorRT's ``execute_async_v3`` takes."""

    def __init__(self) -> None:
        self._cudart = import_cudart()
        flags = self._cudart.cudaStreamNonBlocking
        self._stream = check(self._cudart.cudaStreamCreateWithFlags(flags), "stream creation")
        self._finalizer = weakref.finalize(self, _destroy_stream, self._cudart, self._stream)

    def close(self) -> None:
        """Wait for the stream's work, then destroy it (also done when the object is collected)."""
        if self._finalizer.alive:
            self.synchronize()
            self._finalizer()

    @property
    def handle(self) -> int:
        return int(self._stream)

    @property
    def raw(self) -> Any:
        return self._stream

    def synchronize(self) -> None:
        check(self._cudart.cudaStreamSynchronize(self._stream), "stream synchronize")


class Event:
    """A CUDA event: ``record`` on a stream, ``elapsed_ms`` between two (device-side timing)."""

    def __init__(self) -> None:
        self._cudart = import_cudart()
        self._event = check(self._cudart.cudaEventCreate(), "event creation")
        self._finalizer = weakref.finalize(self, self._cudart.cudaEventDestroy, self._event)

    def close(self) -> None:
        """Destroy the event (also done when the object is collected)."""
        self._finalizer()

    def record(self, stream: Stream) -> None:
        check(self._cudart.cudaEventRecord(self._event, stream.raw), "event record")

    def synchronize(self) -> None:
        check(self._cudart.cudaEventSynchronize(self._event), "event synchronize")

    def elapsed_ms(self, start: "Event") -> float:
        return float(check(self._cudart.cudaEventElapsedTime(start._event, self._event), "event timing"))


def _destroy_stream(cudart: Any, stream: Any) -> None:
    cudart.cudaStreamDestroy(stream)
