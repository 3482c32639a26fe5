"""TensorRT optimization profiles: (min, opt, max) of every input of every graph, from the contract.

Pure functions of the graph contract, the image size and a :class:`BuildConfig`; no TensorRT needed.
"""

from __future__ import annotations

from typing import NamedTuple

from sam2rt import contract as C
from sam2rt.engines.config import BuildConfig
from sam2rt.engines.preprocess import tap_ranges
from sam2rt.errors import Sam2rtError

Shape = tuple[int, ...]


class Profile(NamedTuple):
    """One input's shape range: TensorRT tunes for ``opt`` and accepts anything in [min, max] per axis."""

    min: Shape
    opt: Shape
    max: Shape

    def to_json(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def dim_ranges(cfg: BuildConfig) -> dict[str, tuple[int, int, int]]:
    """(min, opt, max) of each dynamic symbol.

    B objects 1..max_objects (opt 1); N points 1..max_points + 2 (opt 2: a click, or tracking's one
    padding point, is the common case); M memory slots and P pointer slots 1..capacity (opt = capacity: the
    steady state of tracking, once the bank is full); H, W frame size 32..max_frame_side (opt 1080p); Hm, Wm
    the postprocessing's mask size 1..max_frame_side (opt 1080p).
    """
    side = cfg.max_frame_side
    return {"B": (1, cfg.opt_objects, cfg.max_objects), "N": (1, cfg.opt_points, cfg.max_points_fed),
            "M": (1, cfg.memory_slots, cfg.memory_slots), "P": (1, cfg.ptr_slots, cfg.ptr_slots),
            "H": (32, min(1080, side), side), "W": (32, min(1920, side), side),
            "Hm": (1, min(1080, side), side), "Wm": (1, min(1920, side), side)}


def graph_profiles(spec: C.GraphSpec, image_size: int, cfg: BuildConfig) -> dict[str, Profile]:
    """The profile of every input of ``spec`` that has a dynamic axis (static inputs need none).

    Returns {input name: Profile}, e.g. memory_attention "memory": min (1, 1, hw, 64), opt (10, 1, hw, 64),
    max (10, 16, hw, 64) with the default bank at 16 objects.
    """
    C.check_image_size(image_size)
    spatial = C.resolve_dims(image_size)
    ranges = {**dim_ranges(cfg), **tap_ranges(image_size, cfg.max_frame_side)}  # Tr, Tc: preprocessing taps
    profiles: dict[str, Profile] = {}
    for t in spec.inputs:
        if not any(d in ranges for d in t.shape):
            continue
        picks = []
        for which in range(3):
            shape = []
            for d in t.shape:
                if isinstance(d, int):
                    shape.append(d)
                elif d in ranges:
                    shape.append(ranges[d][which])
                elif d in spatial:
                    shape.append(spatial[d])
                else:
                    raise AssertionError(f"{spec.name}.{t.name}: unknown symbol {d!r}")
            picks.append(tuple(shape))
        profiles[t.name] = Profile(*picks)
    return profiles


def all_profiles(image_size: int, cfg: BuildConfig) -> dict[str, dict[str, Profile]]:
    """Profiles of the four graphs, the two preprocessing graphs and the postprocessing graph, by graph name."""
    return {spec.name: graph_profiles(spec, image_size, cfg)
            for spec in (*C.GRAPHS, *C.PREPROCESS_GRAPHS, C.POSTPROCESS)}


def check_within(graph: str, dims: dict[str, int], limits: dict[str, int]) -> None:
    """Raise when a call exceeds what the engines were built for, naming the ``sam2rt build`` flag.

    dims: the call's dynamic sizes, e.g. {"B": 20, "N": 3}; limits: the engine's maxima per symbol.
    """
    flags = {"B": ("objects", "--max-objects N"), "N": ("points per object (clicks + 2 box corners)",
                                                          "--max-points N"),
             "M": ("memory slots", "a model exported with more --cond-slots"),
             "P": ("object-pointer slots", "a model exported with more --cond-slots"),
             "H": ("frame height", "a smaller frame"), "W": ("frame width", "a smaller frame"),
             "Hm": ("mask height", "a smaller mask_size"), "Wm": ("mask width", "a smaller mask_size")}
    for d, size in dims.items():
        limit = limits.get(d)
        if limit is not None and size > limit:
            what, how = flags.get(d, (d, "larger limits"))
            raise Sam2rtError(f"{graph}: {size} {what} exceed the engine's limit of {limit}; rebuild the engines "
                              f"with `sam2rt build MODEL_DIR --out ENGINE_DIR {how}` (or use fewer)")
