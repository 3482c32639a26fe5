"""The manifest's schema, checked field by field so an error names the bad field and what it should be.

A small typed validator of our own rather than ``jsonschema``: the schema is a dozen fields, the runtime
would gain a dependency (and its own dependencies) on every Jetson install for it, and jsonschema's
messages ("'abc' is not of type 'integer'") do not say which file or what to do.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from sam2rt import contract as C
from sam2rt.errors import Sam2rtError

# Model settings the runtime needs to reproduce the official predictor's tracking logic; the integers
# are listed with their smallest valid value, every other key is a boolean.
TRACKING_INTS = {
    "num_maskmem": 1,
    "max_obj_ptrs_in_encoder": 1,
    "max_cond_frames_in_attn": -1,
    "memory_temporal_stride_for_eval": 1,
    "multimask_min_pt_num": 0,
    "multimask_max_pt_num": 0,
    "fill_hole_area": 0,
}
TRACKING_BOOLS = (
    "only_obj_ptrs_in_the_past_for_eval",
    "use_signed_tpos_enc_to_obj_ptrs",
    "use_obj_ptrs_in_encoder",
    "multimask_output_in_sam",
    "multimask_output_for_tracking",
    "use_mask_input_as_output_without_sam",
    "pred_obj_scores",
    "fixed_no_obj_ptr",
    "soft_no_obj_ptr",
    "non_overlap_masks",
    "clear_non_cond_mem_around_input",
    "add_all_frames_to_correct_as_cond",
)
TRACKING_KEYS = tuple(TRACKING_INTS) + TRACKING_BOOLS
BANK_MINIMUMS = {"cond_slots": 2, "recent_slots": 1, "max_obj_ptrs": 1, "max_objects": 1, "max_points": 1}
PRECISIONS = ("fp32", "fp16", "int8", "int8-cpu")  # the one list: calibration.variant uses it too
_FILE_NAME = re.compile(r"^[^/\\]+$")  # a name inside the model folder, never a path out of it
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class _Fields:
    """Reads dotted fields of one manifest; every failure names the file, the field and the fix."""

    def __init__(self, raw: Any, where: str, hint: str) -> None:
        self.raw, self.where, self.hint = raw, where, hint

    def fail(self, field: str, problem: str) -> Sam2rtError:
        return Sam2rtError(f"{self.where}: field {field!r} {problem}; {self.hint}")

    def get(self, field: str, kind: str, check: Callable[[Any], bool]) -> Any:
        value: Any = self.raw
        for depth, part in enumerate(field.split(".")):
            if not isinstance(value, dict):
                if depth == 0:
                    raise Sam2rtError(f"{self.where} must hold a JSON object, got {_short(value)}; {self.hint}")
                raise self.fail(".".join(field.split(".")[:depth]), f"must be a JSON object, got {_short(value)}")
            if part not in value:
                raise self.fail(field, "is missing")
            value = value[part]
        if not check(value):
            raise self.fail(field, f"must be {kind}, got {_short(value)}")
        return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(v: Any) -> bool:
    return type(v) is int


def _at_least(minimum: int) -> Callable[[Any], bool]:
    return lambda v: _is_int(v) and v >= minimum


def _is_file_name(v: Any) -> bool:
    return isinstance(v, str) and bool(_FILE_NAME.match(v)) and v not in (".", "..")


def validate_structure(raw: Any, where: str, hint: str) -> None:
    """What every loader reads: format, model name and image size, graph files, bank, constants."""
    f = _Fields(raw, where, hint)
    f.get("format", "an integer", _is_int)
    f.get("model.name", "a model name string", lambda v: isinstance(v, str) and bool(v))
    f.get("model.image_size", "a multiple of 32, at least 128", lambda v: _is_int(v) and v >= 128 and v % 32 == 0)
    if isinstance(raw.get("model"), dict) and "memory_tokens" in raw["model"]:
        f.get("model.memory_tokens", "an integer >= 1", _at_least(1))
    for spec in C.GRAPHS:
        f.get(f"graphs.{spec.name}.file", "a file name in the model folder", _is_file_name)
        entry = raw["graphs"][spec.name]
        if "sha256" in entry:
            f.get(f"graphs.{spec.name}.sha256", "64 lowercase hex digits", lambda v: isinstance(v, str) and bool(_SHA256.match(v)))
    f.get("constants", "a file name in the model folder", _is_file_name)
    f.get("tracking", "a JSON object", lambda v: isinstance(v, dict))
    f.get("bank", "a JSON object", lambda v: isinstance(v, dict))
    for key, minimum in BANK_MINIMUMS.items():
        if key in raw["bank"]:
            f.get(f"bank.{key}", f"an integer >= {minimum}", _at_least(minimum))
    if "precision" in raw:
        f.get("precision", f"one of {', '.join(PRECISIONS)}", lambda v: v in PRECISIONS)


def validate_runtime(raw: Any, where: str, hint: str) -> None:
    """What tracking reads on top of ``validate_structure``: every tracking setting, every graph's hash."""
    f = _Fields(raw, where, hint)
    for key, minimum in TRACKING_INTS.items():
        f.get(f"tracking.{key}", f"an integer >= {minimum}", _at_least(minimum))
    for key in TRACKING_BOOLS:
        f.get(f"tracking.{key}", "true or false", lambda v: type(v) is bool)
    for spec in C.GRAPHS:
        f.get(f"graphs.{spec.name}.sha256", "64 lowercase hex digits",
              lambda v: isinstance(v, str) and bool(_SHA256.match(v)))
