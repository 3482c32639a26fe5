"""FLEET.yaml, the cameras of ``sam2rt fleet`` (no Ray here)::

    model: models/tiny          # exported model folder, readable on every node (relative: to this file)
    backend: ort                # ort, ort-gpu or trt
    threads: 0                  # ONNX Runtime threads per graph (0: its default)
    out: fleet_out              # the cameras' result folders: OUT/<camera name>/
    cameras:
      - name: door              # letters, digits, _ . - ; unique
        source: rtsp://10.0.0.7/stream   # a stream URL, a video file, or a device index (0)
        node: 10.0.0.5          # optional: run on the Ray node with this IP (a camera attached to it)
        prompts:                # the prompts format of `sam2rt track`, all on frame 0: applied to the
          - {frame: 0, obj_id: 1, box: [100, 80, 400, 460]}   # first frame of every (re)start
        masks: false            # also write each frame's label image (PNG)
        ros2_topic: /door/objects   # optional: also publish the JSON summaries (needs the ros extra)
        max_fps: 0              # read a file no faster than this (0: as fast as tracking goes)
        gpus: 0                 # GPUs this camera's actor reserves (a fraction shares one GPU)
        cpus: 1                 # CPUs it reserves (0.5: two cameras per core)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sam2rt.errors import Sam2rtError
from sam2rt.prompts_file import Prompt, parse_prompts

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CAMERA_KEYS = {"name", "source", "node", "prompts", "masks", "ros2_topic", "max_fps", "gpus", "cpus"}
_FLEET_KEYS = {"model", "backend", "threads", "out", "cameras"}


@dataclass(frozen=True)
class CameraSpec:
    """One camera. source: a stream URL, a file path (absolute) or a device index as digits."""

    name: str
    source: str
    prompts: tuple[Prompt, ...]
    node: str | None = None
    masks: bool = False
    ros2_topic: str | None = None
    max_fps: float = 0.0
    gpus: float = 0.0
    cpus: float = 1.0

    @property
    def is_file(self) -> bool:
        return not (self.source.isdigit() or "://" in self.source)


@dataclass(frozen=True)
class FleetConfig:
    """The whole fleet: one model for every camera, each camera's results under ``out / name``."""

    model: Path
    out: Path
    cameras: tuple[CameraSpec, ...] = field(default_factory=tuple)
    backend: str = "ort"
    threads: int = 0


def load_fleet(path: Path) -> FleetConfig:
    """Read and check FLEET.yaml; relative paths are relative to its folder. Raises Sam2rtError naming the
    camera and the field to fix."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise Sam2rtError(f"FLEET {path}: cannot read it as YAML ({e}); see `sam2rt fleet --help`") from None
    if not isinstance(data, dict) or "model" not in data or not isinstance(data.get("cameras"), list):
        raise Sam2rtError(f"FLEET {path}: expected a mapping with \"model\" and a \"cameras\" list; see "
                          "`sam2rt fleet --help`")
    _no_unknown(data, _FLEET_KEYS, f"FLEET {path}")
    base = path.parent
    cameras = tuple(_camera(entry, f"FLEET {path} camera {i}", base) for i, entry in enumerate(data["cameras"]))
    if not cameras:
        raise Sam2rtError(f"FLEET {path}: \"cameras\" is empty; list at least one camera")
    names = [c.name for c in cameras]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise Sam2rtError(f"FLEET {path}: camera name(s) {', '.join(duplicates)} used twice; names must be unique")
    backend = str(data.get("backend", "ort"))
    if backend not in ("ort", "ort-gpu", "trt"):
        raise Sam2rtError(f"FLEET {path}: backend {backend!r}; use ort, ort-gpu or trt")
    return FleetConfig(model=base / str(data["model"]), out=base / str(data.get("out", "fleet_out")),
                       cameras=cameras, backend=backend, threads=int(data.get("threads", 0)))


def _no_unknown(entry: dict, keys: set[str], where: str) -> None:
    unknown = sorted(set(entry) - keys)
    if unknown:
        raise Sam2rtError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}; valid: {', '.join(sorted(keys))}")


def _camera(entry: Any, where: str, base: Path) -> CameraSpec:
    if not isinstance(entry, dict):
        raise Sam2rtError(f"{where}: expected a mapping with name, source and prompts")
    _no_unknown(entry, _CAMERA_KEYS, where)
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise Sam2rtError(f"{where}: \"name\" must be letters, digits, '_', '.' or '-' (not first), got {name!r}")
    where = f"{where} ({name})"
    source = entry.get("source")
    if isinstance(source, int) and not isinstance(source, bool):
        source = str(source)
    if not isinstance(source, str) or not source:
        raise Sam2rtError(f"{where}: \"source\" must be a stream URL, a video file or a device index")
    if not (source.isdigit() or "://" in source):
        source = str(base / source)
    prompts = parse_prompts(entry.get("prompts"), f"{where} prompts", base)
    late = [p for p in prompts if p.frame != 0]
    if late:
        raise Sam2rtError(f"{late[0].where}: frame {late[0].frame}; a camera's prompts apply to the first frame of "
                          "each (re)start, so every entry has frame 0")
    try:
        max_fps, gpus, cpus = (float(entry.get(k, d)) for k, d in (("max_fps", 0.0), ("gpus", 0.0), ("cpus", 1.0)))
    except (TypeError, ValueError):
        raise Sam2rtError(f"{where}: \"max_fps\", \"gpus\" and \"cpus\" must be numbers") from None
    if min(max_fps, gpus, cpus) < 0:
        raise Sam2rtError(f"{where}: \"max_fps\", \"gpus\" and \"cpus\" must be >= 0")
    node = entry.get("node")
    return CameraSpec(name, source, tuple(prompts), None if node is None else str(node), bool(entry.get("masks", False)),
                      entry.get("ros2_topic"), max_fps, gpus, cpus)
