"""``sam2rt fleet`` on Ray: one actor per camera, restarted by Ray when it dies, and a status board.

Each camera is a :class:`~sam2rt.cluster.camera.CameraActor` (``max_restarts=-1``: Ray restarts a dead one,
whose constructor resumes the camera with its prompts); a camera with a ``node`` runs on that node (Ray's
``node:<ip>`` resource). The status board is a named actor, so ``sam2rt fleet FLEET.yaml --status --ray
ADDRESS`` reads it from another process; the driver also writes it to ``OUT/status.json`` every second.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from sam2rt.cluster.camera import CameraActor, FleetStatus
from sam2rt.cluster.fleet_config import FleetConfig
from sam2rt.cluster.session import check_fits
from sam2rt.errors import Sam2rtError

DONE = ("ended", "failed", "stopped")
STATUS_FILE = "status.json"


def board_name(cfg: FleetConfig) -> str:
    """The status board's actor name: one per output folder."""
    return "sam2rt-fleet-" + hashlib.sha256(str(Path(cfg.out).absolute()).encode()).hexdigest()[:12]


class Fleet:
    """The running cameras of ``cfg`` in the connected Ray session (``ray``: the module; ``address``: the
    cluster's, None for a local instance, where cameras that could never be placed are refused up front)."""

    def __init__(self, cfg: FleetConfig, ray: Any, address: str | None = None) -> None:
        if not (Path(cfg.model) / "manifest.json").is_file():
            raise Sam2rtError(f"model {cfg.model}: no manifest.json; pass a model folder made by `sam2rt export`")
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        self.cfg, self.ray = cfg, ray
        nodes = {n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}
        for spec in cfg.cameras:
            if spec.node is not None and spec.node not in nodes:
                raise Sam2rtError(f"camera {spec.name}: no live Ray node has the address {spec.node} (nodes: "
                                  f"{', '.join(sorted(nodes))}); fix its \"node\" or start Ray on that machine")
        check_fits(ray, address, 1, sum(c.cpus for c in cfg.cameras), sum(c.gpus for c in cfg.cameras),
                   f"the {len(cfg.cameras)} cameras")
        try:
            self.board = ray.remote(FleetStatus).options(name=board_name(cfg), num_cpus=0).remote()
        except ValueError:  # the name is taken
            raise Sam2rtError(f"a fleet writing to {cfg.out} is already running in this Ray cluster; stop it, or "
                              "give this one another \"out\"") from None
        ray.get(self.board.snapshot.remote())  # registered before a camera looks it up by name
        self.cameras: dict[str, Any] = {}
        try:
            for spec in cfg.cameras:
                resources = {f"node:{spec.node}": 0.001} if spec.node else None
                actor = ray.remote(CameraActor).options(num_cpus=spec.cpus, num_gpus=spec.gpus, resources=resources,
                                                        max_restarts=-1, max_task_retries=-1, max_concurrency=4)
                self.cameras[spec.name] = actor.remote(spec, str(Path(cfg.model).absolute()), cfg.backend,
                                                       cfg.threads, str(Path(cfg.out).absolute()), board_name(cfg))
        except BaseException:
            self.shutdown()
            raise

    def status(self) -> dict[str, dict[str, Any]]:
        """name -> state, frames, fps, dropped, restarts, last_error, pid, resumed_at (cameras not yet started
        are "starting")."""
        rows = self.ray.get(self.board.snapshot.remote())
        return {name: rows.get(name, {"state": "starting", "restarts": 0, "last_error": None})
                for name in self.cameras}

    def write_status(self, status: dict[str, dict[str, Any]] | None = None) -> Path:
        """OUT/status.json (atomic): ``status`` (default: taken now) with the time."""
        path = Path(self.cfg.out) / STATUS_FILE
        tmp = path.with_name(f".{STATUS_FILE}.tmp")
        tmp.write_text(json.dumps({"time": time.time(), "cameras": status or self.status()}, indent=1))
        os.replace(tmp, path)
        return path

    def done(self) -> bool:
        """Every camera has ended (file sources), failed or stopped."""
        return all(row.get("state") in DONE for row in self.status().values())

    def run(self, every_s: float = 1.0, on_status: Callable[[dict[str, dict[str, Any]]], None] | None = None,
            timeout_s: float | None = None) -> dict[str, dict[str, Any]]:
        """Write the status every ``every_s`` (and pass it to ``on_status``) until every camera is done or
        ``timeout_s`` passed; returns the last status."""
        t0 = time.monotonic()
        while True:
            status = self.status()
            self.write_status(status)
            if on_status is not None:
                on_status(status)
            if all(row.get("state") in DONE for row in status.values()):
                return status
            if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                return status
            time.sleep(every_s)

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Stop every camera (its current frame finishes, its files are closed), then end the actors."""
        ray = self.ray
        stops = [actor.stop.remote() for actor in self.cameras.values()]
        ray.wait(stops, num_returns=len(stops), timeout=timeout_s)
        if self.cameras:
            self.write_status()
        for actor in [*self.cameras.values(), self.board]:
            ray.kill(actor, no_restart=True)
        self.cameras = {}


def read_board(cfg: FleetConfig, ray: Any) -> dict[str, dict[str, Any]]:
    """The status of a fleet running in this Ray cluster (its named board), for ``--status``."""
    try:
        board = ray.get_actor(board_name(cfg))
    except ValueError:
        raise Sam2rtError(f"no fleet with output folder {cfg.out} is running in this Ray cluster; start it with "
                          "`sam2rt fleet FLEET.yaml --ray ADDRESS`") from None
    return ray.get(board.snapshot.remote())


def format_status(status: dict[str, dict[str, Any]]) -> str:
    """One line per camera: state, frames, FPS, dropped frames, restarts, last error."""
    lines = [f"{'camera':<16} {'state':<9} {'frames':>7} {'fps':>7} {'dropped':>8} {'restarts':>8}  last error"]
    for name, row in status.items():
        lines.append(f"{name:<16} {row.get('state', '?'):<9} {row.get('frames', 0):>7} {row.get('fps', 0.0):>7.2f} "
                     f"{row.get('dropped', 0):>8} {row.get('restarts', 0):>8}  {row.get('last_error') or '-'}")
    return "\n".join(lines)
