"""GPU preprocessing without torch or cupy: small ONNX graphs (``contract.PREPROCESS_GRAPHS``) built into engines.

uint8 frame (H, W, 3) -> int32 -> one resize pass along one axis -> round to uint8 levels -> the pass along the
other axis -> round -> ImageNet normalisation by table lookup -> (1, 3, S, S) float32. The pass order is
Pillow's, chosen on the host per frame size: one graph (and engine) per order
(``contract.PREPROCESS_VERTICAL_FIRST`` / ``PREPROCESS_HORIZONTAL_FIRST``), picked by :func:`resize_inputs`.

Each pass is Pillow's own arithmetic on gathered taps: output pixel i reads the T input pixels of its window
(``index (S, T)``, Gather) and sums them times Pillow's fixed-point coefficients (``weight (S, T)`` int32:
the coefficient times 2**22, as Pillow's ``precompute_coeffs`` rounds it), in int32, then adds 2**21, divides
by 2**22 and clips to 0..255 exactly as Pillow's ``clip8``. Integer sums are exact whatever the order, so the
result is bit-equal to Pillow (``runtime.imageops.preprocess_official``), and there is no float product that
TF32 could touch. The work is proportional to the taps (``preprocess_flops``; a 1080p frame: 0.064 GFLOP at
512 px and 0.085 at 1024 px, against 8.1 and 19.5 for the two dense matrix products of the former graphs). The
indices and
coefficients are graph inputs, made once per frame size on the host, so one engine serves every video size.
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


def _pillow_windows(in_size: int, out_size: int) -> list[tuple[int, np.ndarray]]:
    """Pillow's ``precompute_coeffs`` for one axis: per output pixel, its window start and its fixed-point
    coefficients (int64, the weight times 2**22 rounded as Pillow rounds it).

    Support 2 widened by the shrink factor, window from ``center ± support`` truncated like its int casts,
    weights normalised per row, then its 8-bit fixed-point rounding.
    """
    if in_size <= 0 or out_size <= 0:
        raise Sam2rtError(f"resize sizes must be positive, got {in_size} -> {out_size}")
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    windows = []
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
        windows.append((lo, fixed.astype(np.int64)))
    return windows


@lru_cache(maxsize=16)
def pillow_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """One axis of Pillow's ``Image.resize(..., BICUBIC)`` as an (out_size, in_size) float32 matrix: each weight
    is the exact value Pillow multiplies with, divided by 2**22 (exact in float32). Read-only."""
    matrix = np.zeros((out_size, in_size), np.float64)
    for i, (lo, fixed) in enumerate(_pillow_windows(in_size, out_size)):
        matrix[i, lo:lo + len(fixed)] = fixed / (1 << _PRECISION_BITS)
    out = matrix.astype(np.float32)
    out.flags.writeable = False
    return out


@lru_cache(maxsize=16)
def pillow_resize_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """One axis of Pillow's resize as gathered taps: ``(index, weight)``, both (out_size, T) int32.

    Row i reads input pixels ``index[i]`` with Pillow's fixed-point coefficients ``weight[i]`` (T = the
    widest window; shorter windows are padded with their last pixel and weight 0). Read-only.
    """
    windows = _pillow_windows(in_size, out_size)
    taps = max(len(fixed) for _, fixed in windows)
    index = np.zeros((out_size, taps), np.int32)
    weight = np.zeros((out_size, taps), np.int32)
    for i, (lo, fixed) in enumerate(windows):
        index[i] = np.minimum(lo + np.arange(taps), lo + max(len(fixed), 1) - 1)
        weight[i, :len(fixed)] = fixed
    for a in (index, weight):
        a.flags.writeable = False
    return index, weight


def max_taps(in_size: int, out_size: int) -> int:
    """An upper bound of the taps per output pixel for any input side up to ``in_size`` (engine profiles):
    a window spans at most 2 * support + 1 pixels, support = 2 * max(in/out, 1)."""
    return int(4.0 * max(in_size / out_size, 1.0)) + 2


def preprocess_flops(height: int, width: int, image_size: int) -> dict[str, int]:
    """Multiply-adds x 2 of the two resize passes for one (height, width) frame: ``dense`` (two matrix products
    with the full (S, H) and (W, S) weights, the former graphs) and ``taps`` (the gathered taps, this graph)."""
    S = image_size
    tr = pillow_resize_taps(height, S)[0].shape[1]
    tc = pillow_resize_taps(width, S)[0].shape[1]
    if pillow_vertical_first(height, width, S):  # (3, H, W) -> (3, S, W) -> (3, S, S)
        dense, taps = 3 * S * width * height + 3 * S * S * width, 3 * S * width * tr + 3 * S * S * tc
    else:  # (3, H, W) -> (3, H, S) -> (3, S, S)
        dense, taps = 3 * height * S * width + 3 * S * S * height, 3 * height * S * tc + 3 * S * S * tr
    return {"dense": 2 * dense, "taps": 2 * taps}


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
    """What the host hands the GPU preprocessing for one frame size: which graph (engine) runs it, and its feeds
    ``rows_index``/``rows_weight`` (S, Tr) int32 and ``cols_index``/``cols_weight`` (S, Tc) int32 (Pillow's
    taps of each axis, :func:`pillow_resize_taps`; the frame is fed per call)."""

    graph: str
    feeds: dict[str, np.ndarray]


def preprocess_spec(vertical_first: bool) -> C.GraphSpec:
    """The preprocessing graph for one pass order (Pillow's order for a frame size: ``pillow_vertical_first``)."""
    return C.PREPROCESS_VERTICAL_FIRST if vertical_first else C.PREPROCESS_HORIZONTAL_FIRST


def resize_inputs(height: int, width: int, image_size: int) -> ResizeInputs:
    """The preprocessing graph to run for frames of ``height`` x ``width``, and its tap inputs.

    Returns ``ResizeInputs(graph, feeds)``: ``graph`` is ``contract.PREPROCESS_VERTICAL_FIRST.name`` or
    ``contract.PREPROCESS_HORIZONTAL_FIRST.name`` (Pillow's pass order for this size), ``feeds`` is
    {"rows_index", "rows_weight": (S, Tr) int32, "cols_index", "cols_weight": (S, Tc) int32}.
    """
    rows_index, rows_weight = pillow_resize_taps(height, image_size)
    cols_index, cols_weight = pillow_resize_taps(width, image_size)
    spec = preprocess_spec(pillow_vertical_first(height, width, image_size))
    return ResizeInputs(spec.name, {"rows_index": rows_index, "rows_weight": rows_weight,
                                    "cols_index": cols_index, "cols_weight": cols_weight})


def tap_ranges(image_size: int, max_frame_side: int) -> dict[str, tuple[int, int, int]]:
    """(min, opt, max) of the tap counts Tr, Tc for engine profiles (opt: a 1080p frame)."""
    opt_r = pillow_resize_taps(min(1080, max_frame_side), image_size)[0].shape[1]
    opt_c = pillow_resize_taps(min(1920, max_frame_side), image_size)[0].shape[1]
    top = max_taps(max_frame_side, image_size)
    return {"Tr": (1, opt_r, top), "Tc": (1, opt_c, top)}


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
        "lut": lut, "half": np.array(1 << (_PRECISION_BITS - 1), np.int32),
        "one": np.array(1 << _PRECISION_BITS, np.int32), "lo": np.array(0, np.int32), "hi": np.array(255, np.int32),
        "offsets": (np.arange(3, dtype=np.int32) * 256).reshape(3, 1, 1), "axes0": np.array([0], np.int64),
        "axes2": np.array([2], np.int64), "axes3": np.array([3], np.int64),
    }
    init = [numpy_helper.from_array(v, name=k) for k, v in consts.items()]
    n = helper.make_node

    def rows_pass(x: str, out: str) -> list[Any]:  # (3, A, B) -> (3, S, B)
        return [n("Gather", [x, "rows_index"], ["r_g"], axis=1),  # (3, S, Tr, B)
                n("Unsqueeze", ["rows_weight", "axes2"], ["r_w"]),  # (S, Tr, 1)
                n("Mul", ["r_g", "r_w"], ["r_p"]), n("ReduceSum", ["r_p", "axes2"], ["r_s"], keepdims=0),
                *_round(n, "r", out)]

    def cols_pass(x: str, out: str) -> list[Any]:  # (3, A, B) -> (3, A, S)
        return [n("Gather", [x, "cols_index"], ["c_g"], axis=2),  # (3, A, S, Tc)
                n("Mul", ["c_g", "cols_weight"], ["c_p"]), n("ReduceSum", ["c_p", "axes3"], ["c_s"], keepdims=0),
                *_round(n, "c", out)]

    passes = (rows_pass("chw", "mid") + cols_pass("mid", "levels") if vertical_first
              else cols_pass("chw", "mid") + rows_pass("mid", "levels"))
    nodes = [
        n("Cast", ["frame"], ["f"], to=TensorProto.INT32),  # (H, W, 3)
        n("Transpose", ["f"], ["chw"], perm=[2, 0, 1]),  # (3, H, W)
        *passes,  # (3, S, S) int32 levels 0..255
        n("Add", ["levels", "offsets"], ["index"]),  # (3, S, S) int32 into the (768,) table
        n("Gather", ["lut", "index"], ["norm"], axis=0),  # (3, S, S) float32
        n("Unsqueeze", ["norm", "axes0"], ["image"]),  # (1, 3, S, S)
    ]
    return spec_model(spec, nodes, init, image_size, PREPROCESS_OPSET)


def _round(n: Any, tag: str, out: str) -> list[Any]:
    """Pillow's ``clip8`` of a fixed-point sum: (sum + 2**21) / 2**22 clipped to 0..255 (int32 division truncates
    where Pillow shifts; the two differ only below 0, which clips to 0 either way)."""
    return [n("Add", [f"{tag}_s", "half"], [f"{tag}_h"]), n("Div", [f"{tag}_h", "one"], [f"{tag}_d"]),
            n("Max", [f"{tag}_d", "lo"], [f"{tag}_m"]), n("Min", [f"{tag}_m", "hi"], [out])]


def spec_model(spec: C.GraphSpec, nodes: list, initializers: list, image_size: int, opset: int) -> Any:
    """A small hand-built graph of the contract as a checked ``onnx.ModelProto``: inputs and outputs typed and
    shaped from ``spec`` (spatial symbols resolved for ``image_size``, the others left dynamic)."""
    import onnx
    from onnx import TensorProto, helper

    dims = C.resolve_dims(image_size)
    types = {"uint8": TensorProto.UINT8, "float32": TensorProto.FLOAT, "bool": TensorProto.BOOL,
             "int32": TensorProto.INT32}

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
