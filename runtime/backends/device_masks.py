"""Masks made where the logits are: the postprocessing engine (``contract.POSTPROCESS``) behind the tracker's
``masks`` hook, so only the (K, H', W') masks come down, never float logits at video size.

Used by ``trt_backend.TrtExecutor``; it needs an allocator, a stream and an execution context of the engine
(anything with ``bind``/``enqueue``), so the tests run it with a host allocator and a fake context.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from sam2rt.engines.postprocess import resize_matrices
from sam2rt.runtime.backends.cuda import Buf
from sam2rt.runtime.outputs import threshold_resize


class DeviceMasks:
    """Threshold/resize on the device: (K, 1, h4, h4) logits -> (K, H', W') bool or uint8 masks.

    Buffers are kept for the last (K, H', W'): the weights (made once per mask size, uploaded once), an
    upload buffer for host logits and the bool output with its pinned mirror. ``context``: an execution
    context of the postprocessing engine, or None (an engine directory built before it existed: the host's
    ``threshold_resize``, warned once). Sizes outside the engine's profile (sides 1..max_side) go to the
    host too, with the same result.
    """

    def __init__(self, allocator: Any, stream: Any, context: Any | None, low_side: int, max_side: int) -> None:
        self.allocator, self.stream, self.context = allocator, stream, context
        self.low_side, self.max_side = low_side, max_side
        self._key: tuple[int, int, int] | None = None
        self._bufs: dict[str, Buf] = {}
        self._warned = False

    def __call__(self, low: np.ndarray, size: tuple[int, int], dtype: type, device: Buf | None = None) -> np.ndarray:
        """low: (K, 1, h4, h4) float32 logits on the host (holes filled); size (H', W'); dtype bool or uint8.

        device: a device buffer known to hold exactly ``low`` (the step's ``low_res_masks`` when hole filling
        changed nothing): bound as it is. Otherwise ``low`` is uploaded first (K * 4 * h4^2 bytes: 256 KiB per
        object at 1024 px). Returns a new (K, H', W') array; only the masks were copied down.
        """
        H, W = size
        if self.context is None or not 1 <= min(H, W) <= max(H, W) <= self.max_side:
            if self.context is None and not self._warned:
                warnings.warn("these engines have no postprocessing engine (built by an older sam2rt): masks are "
                              "resized on the CPU; rebuild the engines (sam2rt build) to do it on the GPU",
                              stacklevel=3)
                self._warned = True
            return threshold_resize(low, size, dtype)
        bufs = self._buffers(low.shape[0], H, W)
        if device is None or device.shape != low.shape:
            np.copyto(bufs["low_res_masks"].mirror, low)
            self.allocator.upload(bufs["low_res_masks"], self.stream)
            device = bufs["low_res_masks"]
        self.context.bind({"low_res_masks": device, "resize_rows": bufs["resize_rows"],
                           "resize_cols": bufs["resize_cols"], "masks": bufs["masks"]})
        self.context.enqueue(self.stream)
        self.allocator.download(bufs["masks"], self.stream)
        self.allocator.synchronize(self.stream)
        out = bufs["masks"].mirror  # (K, H', W') bool: bytes 0/1
        return (out.view(np.uint8) if np.dtype(dtype) == np.uint8 else out).copy()

    def _buffers(self, K: int, H: int, W: int) -> dict[str, Buf]:
        """The buffers for (K, H', W'), made anew (weights uploaded) when the key changes."""
        if self._key == (K, H, W):
            return self._bufs
        self.close()
        alloc = self.allocator
        self._bufs = {"low_res_masks": alloc.alloc((K, 1, self.low_side, self.low_side), np.float32, mirrored=True),
                      "masks": alloc.alloc((K, H, W), np.bool_, mirrored=True)}
        for name, value in resize_matrices(self.low_side, H, W).items():  # (H', h4), (h4, W')
            self._bufs[name] = alloc.alloc(value.shape, np.float32, mirrored=True)
            np.copyto(self._bufs[name].mirror, value)
            alloc.upload(self._bufs[name], self.stream)
        self._key = (K, H, W)
        return self._bufs

    def close(self) -> None:
        """Free the buffers (the next call makes them again)."""
        for buf in self._bufs.values():
            self.allocator.free(buf)
        self._bufs, self._key = {}, None

