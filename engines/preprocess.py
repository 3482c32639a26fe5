"""GPU preprocessing without torch or cupy: small ONNX graphs (``contract.PREPROCESS_GRAPHS``) built into engines.

uint8 frame (H, W, 3) -> Cast -> MatMul with one axis's resize weights -> round to uint8 levels ->
MatMul with the other axis's -> round -> ImageNet normalisation by table lookup -> (1, 3, S, S) float32.
The pass order is Pillow's, chosen on the host per frame size: one graph (and engine) per order
(``contract.PREPROCESS_VERTICAL_FIRST`` / ``PREPROCESS_HORIZONTAL_FIRST``), picked by :func:`resize_inputs`.

The weights are Pillow's bicubic (antialiased when shrinking) resize coefficients in its own fixed point,
and each pass rounds half up and clips to 0..255 as Pillow does between its two passes, so the graph
reproduces ``runtime.imageops.preprocess_official`` (Pillow ``Image.resize``) up to float32 summation
order: measured on ONNX Runtime CPU in tests/engines/test_preprocess.py (max 1 uint8 level on a few pixels).
The weights are graph inputs, made once per frame size on the host, so one engine serves every video size.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from sam2rt import contract as C
from sam2rt.errors import Sam2rtError
from sam2rt.runtime.imageops import _normalise_lut

_PRECISION_BITS = 32 - 8 - 2  # Pillow's 8-bit resampling fixed point (Resample.c)
PREPROCESS_OPSET = 17


def _bicubic(x: np.ndarray) -> np.ndarray:
    """Pillow's bicubic kernel (a = -0.5), float64."""
    a = -0.5
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


@lru_cache(maxsize=16)
def pillow_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """One axis of Pillow's ``Image.resize(..., BICUBIC)`` as an (out_size, in_size) float32 matrix.

    Pillow's ``precompute_coeffs`` (support 2 widened by the shrink factor, window from ``center ± support``
    truncated like its int casts, weights normalised per row) then its 8-bit fixed-point rounding, so each
    weight is the exact value Pillow multiplies with, divided by 2**22 (exact in float32). Read-only.
    """
    if in_size <= 0 or out_size <= 0:
        raise Sam2rtError(f"resize sizes must be positive, got {in_size} -> {out_size}")
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    matrix = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        w = _bicubic((np.arange(lo, hi) - center + 0.5) / filterscale)
        total = w.sum()
        if total != 0.0:
            w = w / total
        fixed = np.where(w >= 0, np.trunc(0.5 + w * (1 << _PRECISION_BITS)),
                         np.trunc(-0.5 + w * (1 << _PRECISION_BITS)))
        matrix[i, lo:hi] = fixed / (1 << _PRECISION_BITS)
    out = matrix.astype(np.float32)
    out.flags.writeable = False
    return out


@lru_cache(maxsize=16)
def pillow_vertical_first(height: int, width: int, image_size: int) -> bool:
    """Whether Pillow resizes (height, width) -> (S, S) vertically first.

    Pillow rounds to uint8 between its two passes, so the order shows in the result, and recent Pillow
    versions choose it per size (measured: 300x200 -> 256 goes vertical first, 200x300 horizontal first).
    Rather than encode one version's rule, ask the installed Pillow: resize a seeded noise frame and compare
    a sample of output pixels with both orders computed from the same coefficients (a few windows, cheap).
    """
    if height == image_size or width == image_size:
        return False  # one pass only: the order cannot matter
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (height, width), dtype=np.uint8)
    ref = np.asarray(Image.fromarray(noise).resize((image_size, image_size)), dtype=np.float64)  # (S, S)
    rows = pillow_resize_matrix(height, image_size).astype(np.float64)  # (S, H)
    cols = pillow_resize_matrix(width, image_size).astype(np.float64)  # (S, W)
    ii = rng.integers(0, image_size, 64)
    jj = rng.integers(0, image_size, 64)
    x = noise.astype(np.float64)
    h_first = [_round8(rows[i] @ _round8(x @ cols[j])) for i, j in zip(ii, jj)]  # horizontal pass, then vertical
    v_first = [_round8(_round8(rows[i] @ x) @ cols[j]) for i, j in zip(ii, jj)]
    h_err = np.abs(np.array(h_first) - ref[ii, jj]).sum()
    v_err = np.abs(np.array(v_first) - ref[ii, jj]).sum()
    return bool(v_err < h_err)


def _round8(x: np.ndarray | float) -> np.ndarray:
    """Pillow's fixed-point result: round half up, clip to 0..255."""
    return np.clip(np.floor(np.asarray(x) + 0.5), 0.0, 255.0)


class ResizeInputs(NamedTuple):
    """What the host hands the GPU preprocessing for one frame size: which graph (engine) runs it, and its
    weight feeds ``resize_rows`` (S, H) float32 and ``resize_cols`` (W, S) float32 (the frame is fed per call)."""

    graph: str
    feeds: dict[str, np.ndarray]


def preprocess_spec(vertical_first: bool) -> C.GraphSpec:
    """The preprocessing graph for one pass order (Pillow's order for a frame size: ``pillow_vertical_first``)."""
    return C.PREPROCESS_VERTICAL_FIRST if vertical_first else C.PREPROCESS_HORIZONTAL_FIRST


def resize_inputs(height: int, width: int, image_size: int) -> ResizeInputs:
    """The preprocessing graph to run for frames of ``height`` x ``width``, and its weight inputs.

    Returns ``ResizeInputs(graph, feeds)``: ``graph`` is ``contract.PREPROCESS_VERTICAL_FIRST.name`` or
    ``contract.PREPROCESS_HORIZONTAL_FIRST.name`` (Pillow's pass order for this size), ``feeds`` is
    {"resize_rows": (S, H) float32, "resize_cols": (W, S) float32}.
    """
    rows = pillow_resize_matrix(height, image_size)  # (S, H)
    cols = np.ascontiguousarray(pillow_resize_matrix(width, image_size).T)  # (W, S)
    spec = preprocess_spec(pillow_vertical_first(height, width, image_size))
    return ResizeInputs(spec.name, {"resize_rows": rows, "resize_cols": cols})


def preprocess_model(image_size: int, vertical_first: bool) -> Any:
    """One preprocessing graph as an ``onnx.ModelProto`` (opset 17): ``contract.PREPROCESS_VERTICAL_FIRST`` or
    ``PREPROCESS_HORIZONTAL_FIRST``.

    Pillow rounds to uint8 levels between its two passes, so the order shows in the result; it is a graph
    (engine) per order, chosen on the host, rather than an ``If`` on an input, which TensorRT's conditionals
    handle poorly. Needs the ``onnx`` package (in the ``export`` and ``trt`` extras).
    """
    try:
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise Sam2rtError("building the GPU preprocessing graph needs the onnx package: "
                          'pip install "sam2rt[trt]" (or pip install onnx)') from None
    C.check_image_size(image_size)
    spec = preprocess_spec(vertical_first)
    lut = _normalise_lut().reshape(-1)  # (768,) float32: channel c, level v at c * 256 + v
    consts = {
        "lut": lut, "half": np.array(0.5, np.float32), "lo": np.array(0.0, np.float32),
        "hi": np.array(255.0, np.float32), "offsets": (np.arange(3, dtype=np.int32) * 256).reshape(3, 1, 1),
        "axes0": np.array([0], np.int64),
    }
    init = [numpy_helper.from_array(v, name=k) for k, v in consts.items()]
    n = helper.make_node

    def resize_pass(tag: str, operands: list[str], out: str) -> list[Any]:
        """One resize pass, rounded half up and clipped to uint8 levels as Pillow does after each pass."""
        return [n("MatMul", operands, [tag]), n("Add", [tag, "half"], [f"{tag}_h"]),
                n("Floor", [f"{tag}_h"], [f"{tag}_f"]), n("Clip", [f"{tag}_f", "lo", "hi"], [out])]

    if vertical_first:  # (S, H) @ (3, H, W) -> (3, S, W), then @ (W, S)
        passes = resize_pass("pass1", ["resize_rows", "chw"], "mid") + resize_pass("pass2", ["mid", "resize_cols"],
                                                                                  "levels_f")
    else:  # (3, H, W) @ (W, S) -> (3, H, S), then (S, H) @
        passes = resize_pass("pass1", ["chw", "resize_cols"], "mid") + resize_pass("pass2", ["resize_rows", "mid"],
                                                                                  "levels_f")
    nodes = [
        n("Cast", ["frame"], ["f"], to=TensorProto.FLOAT),  # (H, W, 3)
        n("Transpose", ["f"], ["chw"], perm=[2, 0, 1]),  # (3, H, W)
        *passes,  # (3, S, S) float32 levels 0..255
        n("Cast", ["levels_f"], ["levels"], to=TensorProto.INT32),
        n("Add", ["levels", "offsets"], ["index"]),  # (3, S, S) int32 into the (768,) table
        n("Gather", ["lut", "index"], ["norm"], axis=0),  # (3, S, S) float32
        n("Unsqueeze", ["norm", "axes0"], ["image"]),  # (1, 3, S, S)
    ]
    return spec_model(spec, nodes, init, image_size, PREPROCESS_OPSET)


def spec_model(spec: C.GraphSpec, nodes: list, initializers: list, image_size: int, opset: int) -> Any:
    """A small hand-built graph of the contract as a checked ``onnx.ModelProto``: inputs and outputs typed and
    shaped from ``spec`` (spatial symbols resolved for ``image_size``, the others left dynamic)."""
    import onnx
    from onnx import TensorProto, helper

    dims = C.resolve_dims(image_size)
    types = {"uint8": TensorProto.UINT8, "float32": TensorProto.FLOAT, "bool": TensorProto.BOOL}

    def info(t: C.TensorSpec) -> Any:
        return helper.make_tensor_value_info(t.name, types[t.dtype], [dims.get(d, d) for d in t.shape])

    graph = helper.make_graph(nodes, spec.name, [info(t) for t in spec.inputs], [info(t) for t in spec.outputs],
                              initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="sam2rt")
    model.ir_version = min(model.ir_version, 8)  # readable by older ONNX Runtime / TensorRT parsers
    onnx.checker.check_model(model)
    return model


def preprocess_models(image_size: int) -> dict[str, Any]:
    """Both preprocessing graphs, keyed by graph name (what ``sam2rt build`` writes and builds)."""
    return {preprocess_spec(v).name: preprocess_model(image_size, v) for v in (True, False)}


def preprocess_onnx_bytes(image_size: int, vertical_first: bool) -> bytes:
    """One serialised preprocessing graph (``sam2rt build`` writes it as ``<graph name>.onnx``)."""
    return preprocess_model(image_size, vertical_first).SerializeToString()
