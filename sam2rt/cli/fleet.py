"""``sam2rt fleet``: many cameras on a Ray cluster (or a local Ray), one actor and tracker per camera.

The work is :class:`sam2rt.cluster.fleet.Fleet`; this module reads FLEET.yaml, runs the fleet until every
camera has ended (file sources) or the command is stopped (Ctrl-C, SIGTERM), printing the status table, and
stops every camera actor on the way out. ``--status`` prints the table of a fleet that is running.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sam2rt.errors import Sam2rtError


def _print_status(status: dict) -> None:
    from sam2rt.cluster.fleet import format_status

    print(format_status(status), flush=True)


def _cmd_fleet(args: argparse.Namespace) -> int:
    from sam2rt.cluster.fleet_config import load_fleet

    cfg = load_fleet(args.fleet)
    if args.status:
        return _show_status(cfg, args.ray)
    from sam2rt.cluster.fleet import Fleet
    from sam2rt.cluster.session import ray_session

    with ray_session(args.ray) as ray:
        fleet = Fleet(cfg, ray, args.ray)
        try:
            status = fleet.run(every_s=args.every, on_status=_print_status if args.every > 0 else None,
                               timeout_s=args.duration)
        finally:
            fleet.shutdown()
    print(f"fleet stopped; status: {Path(cfg.out) / 'status.json'}")
    return 1 if any(row.get("state") == "failed" for row in status.values()) else 0


def _show_status(cfg, address: str | None) -> int:
    """The live board through Ray with --ray, else OUT/status.json as the running fleet last wrote it."""
    if address:
        from sam2rt.cluster.fleet import read_board
        from sam2rt.cluster.session import ray_session

        with ray_session(address) as ray:
            _print_status(read_board(cfg, ray))
        return 0
    path = Path(cfg.out) / "status.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        raise Sam2rtError(f"no status at {path}; is the fleet running? (or pass --ray ADDRESS to ask the cluster)") from None
    _print_status(data["cameras"])
    return 0


_EPILOG = """\
FLEET.yaml:
  model: models/tiny
  out: fleet_out                 # each camera writes OUT/<name>/results.jsonl (+ masks/ with masks: true)
  cameras:
    - name: door
      source: rtsp://10.0.0.7/stream     # stream URL, video file or device index (0)
      node: 10.0.0.5                     # optional: the Ray node the camera is attached to
      prompts: [{frame: 0, obj_id: 1, box: [100, 80, 400, 460]}]
      ros2_topic: /door/objects          # optional (ros extra)
A camera actor that dies is restarted by Ray and resumes with its prompts; the status table shows each
camera's FPS, dropped frames, restarts and last error. Needs Ray: pip install -e ".[ray]". See docs/scale.md.
"""


def add_fleet(sub: argparse._SubParsersAction) -> None:
    """Register ``sam2rt fleet``."""
    p = sub.add_parser("fleet", help="track many cameras on a Ray cluster (or a local Ray)",
                       description="Run one tracker actor per camera of FLEET.yaml.", epilog=_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("fleet", type=Path, metavar="FLEET.yaml", help="the cameras, their prompts and sinks")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="Ray cluster address (auto, ray://head:10001); default: a local Ray started for this run")
    p.add_argument("--status", action="store_true",
                   help="print the status of the running fleet (from the cluster with --ray, else OUT/status.json)")
    p.add_argument("--every", type=float, default=2.0, help="seconds between status lines (0: none)")
    p.add_argument("--duration", type=float, default=None, help="stop the fleet after this many seconds")
    p.set_defaults(func=_cmd_fleet)
