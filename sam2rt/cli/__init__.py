"""The ``sam2rt`` command line: each subcommand assembles its arguments and calls the public API.

Heavy modules (torch, onnxruntime) are imported inside the handlers, so ``sam2rt --help`` is instant.
A :class:`~sam2rt.errors.Sam2rtError` is printed without a traceback and exits with code 2; SIGINT, SIGTERM
and SIGHUP unwind the command (its temporary files are removed) before the process exits.
"""

from __future__ import annotations

import argparse
import signal
import sys
import warnings
from typing import Callable, NoReturn, Sequence

from sam2rt.cli.bench import add_bench
from sam2rt.cli.build import add_build
from sam2rt.cli.convert import add_convert
from sam2rt.cli.lint import add_lint
from sam2rt.cli.report import add_report
from sam2rt.cli.ros2 import add_ros2
from sam2rt.cli.calibrate import add_calibrate
from sam2rt.cli.segment import add_segment
from sam2rt.cli.camera import add_camera
from sam2rt.cli.download import add_download
from sam2rt.cli.export import add_export
from sam2rt.cli.track import add_track
from sam2rt.cli.track_batch import add_track_batch
from sam2rt.cli.fleet import add_fleet
from sam2rt.cli.verify import add_verify
from sam2rt.errors import Sam2rtError
from sam2rt.signals import Terminated, signals_as_exceptions


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_download, add_export]
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
SUBCOMMANDS.append(add_track_batch)
SUBCOMMANDS.append(add_fleet)


class Parser(argparse.ArgumentParser):
    """argparse with the one-line error of every other sam2rt error (``sam2rt: error: ...``, exit 2) instead
    of the usage block; the subcommand's --help is named instead."""

    def error(self, message: str) -> NoReturn:
        if "expected one argument" in message:  # `--point -5,10`: argparse takes -5,10 for an option
            message += " (if the value starts with '-', write it after '=': --point=-5,10)"
        print(f"sam2rt: error: {message}; see `{self.prog} --help`", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="sam2rt", description="SAM 2 video segmentation, deployed for real time.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def _show_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
    """Warnings as one ``sam2rt: warning:`` line (no file and line of library code)."""
    print(f"sam2rt: warning: {message}", file=sys.stderr)


def guarded(prog: str, run: Callable[[], int]) -> int:
    """Run a command: a Sam2rtError becomes its message and exit code 2, Ctrl-C exit code 130, SIGTERM/SIGHUP
    128 + the signal number; each after the command's own cleanup has run."""
    try:
        with signals_as_exceptions(), warnings.catch_warnings():
            warnings.showwarning = _show_warning
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
