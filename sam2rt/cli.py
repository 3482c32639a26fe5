"""The ``sam2rt`` command line: each subcommand assembles its arguments and calls the public API.

Heavy modules (torch, onnxruntime) are imported inside the handlers, so ``sam2rt --help`` is instant.
A :class:`~sam2rt.errors.Sam2rtError` is printed without a traceback and exits with code 2; SIGINT, SIGTERM
and SIGHUP unwind the command (its temporary files are removed) before the process exits.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Callable, Sequence

from sam2rt.cli_bench import add_bench
from sam2rt.cli_build import add_build
from sam2rt.cli_convert import add_convert
from sam2rt.cli_lint import add_lint, lint_warnings
from sam2rt.cli_report import add_report
from sam2rt.cli_ros2 import add_ros2
from sam2rt.cli_calibrate import add_calibrate
from sam2rt.cli_segment import add_segment
from sam2rt.cli_stream import add_camera
from sam2rt.cli_track import add_track
from sam2rt.cli_verify import add_verify
from sam2rt.errors import Sam2rtError
from sam2rt.signals import Terminated, signals_as_exceptions


def _cmd_download(args: argparse.Namespace) -> int:
    from sam2rt.export.checkpoints import download

    path = download(args.model, cache_dir=args.cache_dir)
    print(path)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from sam2rt.contract import BankConfig
    from sam2rt.export.exporter import ExportConfig, export_model

    if (args.checkpoint is None) == (not args.random_weights):
        raise Sam2rtError("pass exactly one of --checkpoint PATH or --random-weights [--seed N]")
    if args.checkpoint is None and args.seed is None:
        args.seed = 0
    bank = BankConfig(cond_slots=args.cond_slots, max_objects=args.max_objects, max_points=args.max_points)
    cfg = ExportConfig(model=args.model, out=args.out, image_size=args.image_size, checkpoint=args.checkpoint,
                       random_seed=args.seed if args.random_weights else None, verify=not args.no_verify, bank=bank)
    manifest = export_model(cfg)
    print(f"wrote {manifest.parent} (4 graphs, constants, manifest)")
    lint_warnings(manifest.parent)
    return 0


def _add_download(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="fetch an official checkpoint into the cache")
    p.add_argument("model", help="model name, e.g. sam2.1_hiera_tiny")
    p.add_argument("--cache-dir", type=Path, default=None, help="default: $SAM2RT_CACHE or ~/.cache/sam2rt")
    p.set_defaults(func=_cmd_download)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model to four verified ONNX graphs")
    p.add_argument("--model", required=True, help="model name, e.g. sam2.1_hiera_tiny")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--image-size", type=int, default=1024, help="model input size (multiple of 32)")
    p.add_argument("--checkpoint", type=Path, default=None, help="official .pt checkpoint")
    p.add_argument("--random-weights", action="store_true", help="seeded random weights (tests, no download)")
    p.add_argument("--seed", type=int, default=None, help="seed for --random-weights (default 0)")
    p.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    p.add_argument("--cond-slots", type=int, default=4, help="conditioning frames in the memory bank")
    p.add_argument("--max-objects", type=int, default=16, help="recorded for engine profiles")
    p.add_argument("--max-points", type=int, default=16, help="recorded for engine profiles")
    p.set_defaults(func=_cmd_export)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_download, _add_export]
SUBCOMMANDS.append(add_track)
SUBCOMMANDS.append(add_segment)
SUBCOMMANDS.append(add_verify)
SUBCOMMANDS.append(add_camera)
SUBCOMMANDS.append(add_bench)
SUBCOMMANDS.append(add_build)
SUBCOMMANDS.append(add_convert)
SUBCOMMANDS.append(add_report)
SUBCOMMANDS.append(add_calibrate)
SUBCOMMANDS.append(add_lint)
SUBCOMMANDS.append(add_ros2)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sam2rt", description="SAM 2 video segmentation, deployed for real time.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def guarded(prog: str, run: Callable[[], int]) -> int:
    """Run a command: a Sam2rtError becomes its message and exit code 2, Ctrl-C exit code 130, SIGTERM/SIGHUP
    128 + the signal number; each after the command's own cleanup has run."""
    try:
        with signals_as_exceptions():
            return run()
    except Sam2rtError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Terminated as e:
        print(f"{prog}: terminated by {signal.Signals(e.signum).name}", file=sys.stderr)
        return 128 + e.signum


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line as ``main`` reads it (argparse exits with 2 on a bad one)."""
    argv = list(argv)
    # ROS arguments (`sam2rt ros2 ... --ros-args -r a:=b -p x:=y`) look like unknown options to argparse
    cut = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
    args = build_parser().parse_args(argv[:cut])
    args.ros_args = argv[cut:]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return guarded("sam2rt", lambda: args.func(args))
