"""The graph contract: the one definition of the four graphs' inputs and outputs, and the manifest.

The exporter, the engine builder and the runtime all read these specs; nothing else spells a tensor
name. Shapes use symbols that are resolved per model with :func:`resolve_dims`:

====  =========================================================================================
S     model input size (image_size, 1024 by default)
h     S // 16, the side of the stride-16 feature map (64 at 1024 px); ``hw`` is h * h
h2    2 * h (stride-8 high-res feature), h4 = 4 * h (stride-4 feature and low-res mask logits)
B     objects (dynamic): all objects of a frame go through a graph in one call
N     prompt points per object (dynamic)
M     memory slots (dynamic): conditioning slots + recent slots
P     object-pointer slots (dynamic)
====  =========================================================================================

Memory layout is slot-major, ``(M, B, hw, 64)``: one slot is one contiguous ``(B, hw, 64)`` block, so the
memory encoder's output (``(B, hw, 64)``) is written straight into its slot by IO binding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Union

from sam2rt.errors import Sam2rtError

Dim = Union[int, str]

HIDDEN_DIM = 256  # transformer width of every SAM 2 model
MEM_DIM = 64  # memory feature width after the memory encoder's out_proj
NO_OBJ_SCORE = -1024.0  # mask logits of an object judged absent (official NO_OBJ_SCORE)
MANIFEST_NAME = "manifest.json"
CONSTANTS_NAME = "constants.npz"
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, numpy dtype name and symbolic shape."""

    name: str
    dtype: str
    shape: tuple[Dim, ...]
    doc: str = ""

    def resolve(self, dims: Mapping[str, int]) -> tuple[int | str, ...]:
        """Concrete shape; dynamic symbols (B, N, M, P) stay as strings unless given in ``dims``."""
        return tuple(dims.get(d, d) if isinstance(d, str) else d for d in self.shape)


@dataclass(frozen=True)
class GraphSpec:
    """A graph: file name stem, inputs and outputs in order."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def filename(self) -> str:
        return f"{self.name}.onnx"

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """ONNX dynamic axes: every symbolic dim that is not spatial."""
        axes: dict[str, dict[int, str]] = {}
        for t in self.inputs + self.outputs:
            dyn = {i: d for i, d in enumerate(t.shape) if d in DYNAMIC_DIMS}
            if dyn:
                axes[t.name] = dyn
        return axes


DYNAMIC_DIMS = ("B", "N", "M", "P")


def resolve_dims(image_size: int) -> dict[str, int]:
    """Spatial symbols for one image size."""
    h = image_size // 16
    return {"S": image_size, "h": h, "h2": 2 * h, "h4": 4 * h, "hw": h * h}


def _t(name: str, dtype: str, shape: tuple[Dim, ...], doc: str) -> TensorSpec:
    return TensorSpec(name, dtype, shape, doc)


IMAGE_ENCODER = GraphSpec(
    name="image_encoder",
    inputs=(_t("image", "float32", (1, 3, "S", "S"), "RGB frame resized to S x S, /255, ImageNet-normalised"),),
    outputs=(
        _t("vision_feat", "float32", (1, HIDDEN_DIM, "h", "h"), "stride-16 backbone feature (no memory)"),
        _t("feat_s0", "float32", (1, 32, "h4", "h4"), "stride-4 feature after the decoder's conv_s0"),
        _t("feat_s1", "float32", (1, 64, "h2", "h2"), "stride-8 feature after the decoder's conv_s1"),
    ),
)

MEMORY_ATTENTION = GraphSpec(
    name="memory_attention",
    inputs=(
        _t("vision_feat", "float32", (1, HIDDEN_DIM, "h", "h"), "current frame's feature, shared by all objects"),
        _t("memory", "float32", ("M", "B", "hw", MEM_DIM), "memory bank, slot-major"),
        _t("memory_valid", "bool", ("M", "B"), "slot holds a memory for this object"),
        _t("memory_tpos", "int32", ("M", "B"), "index into maskmem_tpos_enc: num_maskmem - 1 - t_pos (6 = conditioning)"),
        _t("obj_ptrs", "float32", ("P", "B", HIDDEN_DIM), "object-pointer bank"),
        _t("obj_ptr_valid", "bool", ("P", "B"), "pointer slot is filled"),
        _t("obj_ptr_tpos", "float32", ("P", "B"), "temporal distance / (min(num_frames, max_obj_ptrs) - 1)"),
    ),
    outputs=(
        _t("conditioned_feat", "float32", ("B", HIDDEN_DIM, "h", "h"),
           "feature fused with memory; vision_feat + no_mem_embed for an object with an empty bank"),
    ),
)

MASK_DECODER = GraphSpec(
    name="mask_decoder",
    inputs=(
        _t("image_embed", "float32", ("B", HIDDEN_DIM, "h", "h"), "conditioned_feat (or vision_feat for mask prompts)"),
        _t("feat_s0", "float32", (1, 32, "h4", "h4"), "from the image encoder"),
        _t("feat_s1", "float32", (1, 64, "h2", "h2"), "from the image encoder"),
        _t("point_coords", "float32", ("B", "N", 2), "x, y in model-input pixels (0..S); box corners first"),
        _t("point_labels", "int32", ("B", "N"), "1 positive, 0 negative, 2/3 box corners, -1 padding"),
        _t("mask_input", "float32", ("B", 1, "h4", "h4"), "mask logits prompt (previous low-res logits)"),
        _t("has_mask_input", "bool", ("B",), "use mask_input; otherwise the no-mask embedding"),
        _t("multimask", "bool", ("B",), "pick the best of 3 masks; otherwise the single mask with stability fallback"),
    ),
    outputs=(
        _t("low_res_masks", "float32", ("B", 1, "h4", "h4"), "selected mask logits, NO_OBJ_SCORE where the object is absent"),
        _t("iou", "float32", ("B", 1), "predicted IoU of the selected mask"),
        _t("obj_ptr", "float32", ("B", HIDDEN_DIM), "object pointer, gated by the object score"),
        _t("object_score_logits", "float32", ("B", 1), "object present when > 0"),
        # The image predictor's view (official SAM2ImagePredictor: no selection by the caller's rules, no gating)
        _t("mask_candidates", "float32", ("B", 4, "h4", "h4"),
           "every mask logit map the decoder predicts, ungated: 0 = single-mask token, 1..3 = multimask"),
        _t("iou_candidates", "float32", ("B", 4), "predicted IoU of each candidate"),
        _t("selected_candidate", "int32", ("B",), "index of the candidate in low_res_masks / iou (before gating)"),
    ),
)

MEMORY_ENCODER = GraphSpec(
    name="memory_encoder",
    inputs=(
        _t("vision_feat", "float32", (1, HIDDEN_DIM, "h", "h"), "current frame's feature (no memory)"),
        _t("mask_logits", "float32", ("B", 1, "h4", "h4"), "low-res mask logits, upsampled to S x S inside"),
        _t("binarize", "bool", ("B",), "binarise the mask (frames with point prompts) instead of sigmoid"),
        _t("object_score_logits", "float32", ("B", 1), "adds the no-object embedding where <= 0"),
    ),
    outputs=(
        _t("memory", "float32", ("B", "hw", MEM_DIM), "memory features (float32; the bank rounds them to bfloat16 on store)"),
    ),
)

GRAPHS: tuple[GraphSpec, ...] = (IMAGE_ENCODER, MEMORY_ATTENTION, MASK_DECODER, MEMORY_ENCODER)
GRAPHS_BY_NAME: dict[str, GraphSpec] = {g.name: g for g in GRAPHS}

# GPU preprocessing (TensorRT path): small graphs built by sam2rt.engines.preprocess, not exported from
# PyTorch. H, W are the frame's size (dynamic); the resize matrices are made once per frame size on the host.
# Pillow rounds to uint8 between its two resize passes and picks their order per frame size, so there is one
# graph (engine) per order with the same inputs and outputs; the host picks one per frame size
# (engines.preprocess.resize_inputs) instead of an If on an input, which TensorRT handles poorly.
FRAME_DIMS = ("H", "W")
_PREPROCESS_INPUTS = (
    _t("frame", "uint8", ("H", "W", 3), "RGB frame as captured"),
    _t("rows_index", "int32", ("S", "Tr"), "vertical resize: the Tr input rows of each output row (Pillow bicubic)"),
    _t("rows_weight", "int32", ("S", "Tr"), "their Pillow fixed-point coefficients (x 2**22)"),
    _t("cols_index", "int32", ("S", "Tc"), "horizontal resize: the Tc input columns of each output column"),
    _t("cols_weight", "int32", ("S", "Tc"), "their Pillow fixed-point coefficients (x 2**22)"),
)
_PREPROCESS_OUTPUTS = (_t("image", "float32", (1, 3, "S", "S"), "the image encoder's input"),)
PREPROCESS_VERTICAL_FIRST = GraphSpec("preprocess_vertical_first", _PREPROCESS_INPUTS, _PREPROCESS_OUTPUTS)
PREPROCESS_HORIZONTAL_FIRST = GraphSpec("preprocess_horizontal_first", _PREPROCESS_INPUTS, _PREPROCESS_OUTPUTS)
PREPROCESS_GRAPHS: tuple[GraphSpec, ...] = (PREPROCESS_VERTICAL_FIRST, PREPROCESS_HORIZONTAL_FIRST)

# GPU postprocessing (TensorRT path): made by sam2rt.engines.postprocess, not exported from PyTorch. Hm, Wm are
# the mask size asked for (the video size by default; dynamic); the bilinear weights (align_corners=False, no
# antialias: ``runtime.outputs.threshold_resize``) are made once per mask size on the host. The output is bool
# (0/1 bytes, viewed as uint8 on the host at no cost) rather than a Cast to UINT8, which TensorRT restricts.
MASK_DIMS = ("Hm", "Wm")
POSTPROCESS = GraphSpec(
    name="postprocess_masks",
    inputs=(
        _t("low_res_masks", "float32", ("B", 1, "h4", "h4"), "the step's mask logits (holes filled, as the host's)"),
        _t("resize_rows", "float32", ("Hm", "h4"), "vertical bilinear weights, two taps per row"),
        _t("resize_cols", "float32", ("h4", "Wm"), "horizontal bilinear weights, transposed"),
    ),
    outputs=(_t("masks", "bool", ("B", "Hm", "Wm"), "resize_rows @ logits @ resize_cols > 0 (width pass first)"),),
)

# Values stored beside the graphs in constants.npz (used on the rare mask-prompt path, on the host).
CONSTANTS = {
    "no_obj_ptr": "(256,) pointer of an absent object",
    "no_mem_embed": "(256,) what the image predictor adds to vision_feat (directly_add_no_mem_embed; else zeros)",
    "mask_downsample_weight": "(1, 1, 4, 4) conv turning an S x S mask prompt into decoder mask input",
    "mask_downsample_bias": "(1,)",
}


@dataclass(frozen=True)
class BankConfig:
    """Memory-bank capacities recorded in the manifest (and used for TensorRT profiles).

    cond_slots: conditioning frames attended to (closest ones when there are more).
    recent_slots: non-conditioning frames (num_maskmem - 1 = 6 in every official model).
    max_obj_ptrs: the official max_obj_ptrs_in_encoder (16): pointers of up to 15 past frames.
    ptr_slots (derived): conditioning pointers + max_obj_ptrs - 1 past pointers.
    """

    cond_slots: int = 4
    recent_slots: int = 6
    max_obj_ptrs: int = 16
    max_objects: int = 16
    max_points: int = 16

    @property
    def memory_slots(self) -> int:
        return self.cond_slots + self.recent_slots

    @property
    def ptr_slots(self) -> int:
        return self.cond_slots + self.max_obj_ptrs - 1


def check_image_size(image_size: int) -> None:
    """Raise unless the Hiera backbone can take ``image_size``."""
    if type(image_size) is not int or image_size < 128 or image_size % 32:
        raise Sam2rtError(
            f"image size {image_size!r} is not supported: it must be a multiple of 32 and at least 128 "
            "(the backbone's last stage has stride 32); 512 and 1024 are common choices"
        )
