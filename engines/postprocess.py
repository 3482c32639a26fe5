"""GPU postprocessing without torch or cupy: one small ONNX graph (``contract.POSTPROCESS``) built into an engine.

low-res logits (B, 1, h4, h4) float32 -> MatMul with the horizontal bilinear weights (h4, W') -> MatMul with
the vertical ones (H', h4) -> > 0 -> (B, H', W') bool. The weights are ``runtime.outputs._taps`` written as
matrices (two taps per output index, align_corners=False, no antialias), made once per mask size on the
host by :func:`resize_matrices`, so one engine serves every mask size. The width pass goes first, as in
``outputs.threshold_resize``; each output sums the same two products of the same float32 weights, so the
masks equal the host's except where an interpolated logit is within float rounding of 0 (a GEMM may fuse
the multiply and the add). Measured equal on ONNX Runtime CPU in tests/engines/test_postprocess.py.

Cost of the matrix form: a dense (h4, W') and (H', h4) product per object, about 0.6 GFLOP at 1280x720 from
256x256 logits; on a GPU that is a fraction of a millisecond, and it needs only MatMul and Greater (no
Gather on computed indices, nothing TensorRT restricts).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from sam2rt import contract as C
from sam2rt.engines.preprocess import spec_model
from sam2rt.errors import Sam2rtError
from sam2rt.runtime.outputs import _taps

POSTPROCESS_OPSET = 17


@lru_cache(maxsize=16)
def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """One axis of ``outputs.threshold_resize``'s bilinear resize as an (out_size, in_size) float32 matrix.

    Row i holds the two taps of output i (one entry where both taps are the same source index, at the
    clamped edge: the sum of the two weights, whose products keep the sign of that one logit). Read-only.
    """
    if in_size <= 0 or out_size <= 0:
        raise Sam2rtError(f"resize sizes must be positive, got {in_size} -> {out_size}")
    i0, i1, w0, w1 = _taps(in_size, out_size)
    matrix = np.zeros((out_size, in_size), np.float32)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, i0), w0)
    np.add.at(matrix, (rows, i1), w1)
    matrix.flags.writeable = False
    return matrix


@lru_cache(maxsize=8)
def resize_matrices(low_side: int, height: int, width: int) -> dict[str, np.ndarray]:
    """The postprocessing graph's weight feeds for masks of ``height`` x ``width`` from (low_side)^2 logits:
    {"resize_rows": (height, low_side) float32, "resize_cols": (low_side, width) float32}, read-only."""
    cols = np.ascontiguousarray(bilinear_matrix(low_side, width).T)  # (h4, W')
    cols.flags.writeable = False
    return {"resize_rows": bilinear_matrix(low_side, height), "resize_cols": cols}


def postprocess_model(image_size: int) -> Any:
    """The postprocessing graph (``contract.POSTPROCESS``) as an ``onnx.ModelProto`` (opset 17).

    Needs the ``onnx`` package (in the ``export`` and ``trt`` extras).
    """
    try:
        from onnx import helper, numpy_helper
    except ImportError:
        raise Sam2rtError("building the GPU postprocessing graph needs the onnx package: "
                          'pip install "sam2rt[trt]" (or pip install onnx)') from None
    C.check_image_size(image_size)
    spec = C.POSTPROCESS
    init = [numpy_helper.from_array(np.array(0.0, np.float32), name="zero"),
            numpy_helper.from_array(np.array([1], np.int64), name="axis1")]
    n = helper.make_node
    nodes = [
        n("MatMul", ["low_res_masks", "resize_cols"], ["wide"]),  # (B, 1, h4, W'): width pass first
        n("MatMul", ["resize_rows", "wide"], ["resized"]),  # (B, 1, H', W')
        n("Squeeze", ["resized", "axis1"], ["logits"]),  # (B, H', W')
        n("Greater", ["logits", "zero"], ["masks"]),  # (B, H', W') bool
    ]
    return spec_model(spec, nodes, init, image_size, POSTPROCESS_OPSET)


def postprocess_onnx_bytes(image_size: int) -> bytes:
    """The serialised postprocessing graph (``sam2rt build`` writes it as ``postprocess_masks.onnx``)."""
    return postprocess_model(image_size).SerializeToString()
