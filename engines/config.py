"""``BuildConfig``: one frozen configuration for building a model's TensorRT engines (``sam2rt build``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from sam2rt import contract as C
from sam2rt.errors import Sam2rtError


@dataclass(frozen=True)
class BuildConfig:
    """What the engines are built for; the CLI flags of ``sam2rt build`` map one-to-one onto the first fields.

    max_objects: largest object count B any engine accepts (profile maximum of B).
    max_points: largest number of clicks per object; the point profile allows two more for a box's corners.
    workspace_gib: TensorRT workspace memory pool limit, GiB.
    timing_cache: persistent timing cache file (read when present, written after each build); None = none.
    opt_objects / opt_points: the shapes TensorRT tunes kernels for (1 object, tracking feeds 1 padding
        point and a click feeds 1-2).
    memory_slots / ptr_slots: memory-bank capacities M and P, from the model manifest's bank.
    max_frame_side: largest frame height/width the GPU preprocessing engine accepts, and largest mask side the
        GPU postprocessing engine makes (larger mask sizes are made on the host).
    tf32: let TensorRT run FP32 matmuls/convolutions in TF32 (faster on Ampere and newer, ~1e-3 relative error
        that no CPU verification has seen). Off by default; never on for the preprocessing engines, whose
        Pillow-exact resize weights need full FP32, nor the postprocessing engine (see ``for_graph``).
    """

    max_objects: int = 16
    max_points: int = 16
    workspace_gib: float = 4.0
    timing_cache: Path | None = None
    opt_objects: int = 1
    opt_points: int = 2
    memory_slots: int = C.BankConfig().memory_slots
    ptr_slots: int = C.BankConfig().ptr_slots
    max_frame_side: int = 4096
    tf32: bool = False

    def __post_init__(self) -> None:
        for name in ("max_objects", "max_points", "opt_objects", "opt_points", "memory_slots", "ptr_slots",
                     "max_frame_side"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise Sam2rtError(f"BuildConfig.{name} must be an integer >= 1, got {value!r}")
        if self.opt_objects > self.max_objects:
            raise Sam2rtError(f"opt_objects {self.opt_objects} exceeds max_objects {self.max_objects}")
        if self.opt_points > self.max_points_fed:
            raise Sam2rtError(f"opt_points {self.opt_points} exceeds the point maximum {self.max_points_fed}")
        if not self.workspace_gib > 0:
            raise Sam2rtError(f"--workspace must be a positive number of GiB, got {self.workspace_gib!r}")

    @property
    def max_points_fed(self) -> int:
        """Largest N the runtime feeds the decoder: ``max_points`` clicks plus a box's two corner points.

        (The padding point the official prompt encoder appends is added inside the decoder graph.)
        """
        return self.max_points + 2

    @property
    def workspace_bytes(self) -> int:
        return int(self.workspace_gib * (1 << 30))

    @classmethod
    def for_bank(cls, bank: C.BankConfig, **overrides: Any) -> "BuildConfig":
        """A config whose memory/pointer capacities are the manifest bank's (and max objects/points too,
        unless given in ``overrides``)."""
        fields = {"max_objects": bank.max_objects, "max_points": bank.max_points,
                  "memory_slots": bank.memory_slots, "ptr_slots": bank.ptr_slots}
        fields.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**fields)

    def for_graph(self, graph: str) -> "BuildConfig":
        """The config one graph's engine is built with: TF32 always off for the pixel-exact preprocessing and
        the postprocessing (thresholds at 0 must match the FP32 reference)."""
        if self.tf32 and graph.startswith(("preprocess", "postprocess")):
            return replace(self, tf32=False)
        return self

    def to_json(self) -> dict[str, Any]:
        """JSON-ready fields (the timing cache path as a string), recorded in the engine manifest."""
        raw = asdict(self)
        raw["timing_cache"] = None if self.timing_cache is None else str(self.timing_cache)
        return raw
