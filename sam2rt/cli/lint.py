"""``sam2rt lint``: check exported graphs against what TensorRT 10.3 parses (``sam2rt.engines.lint``).

``lint_warnings`` is what ``sam2rt export``, ``convert`` and ``calibrate`` run on the directory they wrote:
every violation becomes a warning naming the graph and node (the graphs were written; a GPU build may fail).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def lint_warnings(model_dir: Path) -> int:
    """Lint a model directory and print each violation to stderr as a warning; returns how many there were.

    A model exported with ``--attention cpu`` is for ONNX Runtime CPU: its attention-form findings are what that
    form is, so they become one line saying how to export for TensorRT instead of a warning per node.
    """
    from sam2rt.engines.lint import lint_model_dir

    violations = lint_model_dir(model_dir)
    if _attention_form(model_dir) == "cpu":
        expected = [v for v in violations if v.rule == "attention-form"]
        violations = [v for v in violations if v.rule != "attention-form"]
        if expected:
            print(f"sam2rt: note: {model_dir} has attention in the cpu form (--attention cpu, for ONNX Runtime CPU): "
                  f"{len(expected)} attention block(s) TensorRT will not fuse; export with --attention fused for "
                  "TensorRT", file=sys.stderr)
    for v in violations:
        print(f"sam2rt: warning: TensorRT 10.3 lint: {v}", file=sys.stderr)
    if violations:
        print(f"sam2rt: warning: {len(violations)} lint finding(s) in {model_dir}: `sam2rt build` may fail on them; "
              "please report them with the model name and image size", file=sys.stderr)
    return len(violations)


def _attention_form(model_dir: Path) -> str | None:
    """The attention form the manifest records (``exporter.attention``), or None where it cannot be read."""
    try:
        return json.loads((Path(model_dir) / "manifest.json").read_text()).get("exporter", {}).get("attention")
    except (OSError, ValueError, AttributeError):
        return None


def _cmd_lint(args: argparse.Namespace) -> int:
    from sam2rt.engines.lint import lint_file, lint_model_dir

    found = []
    for path in args.paths:
        found += lint_file(path) if path.suffix == ".onnx" else lint_model_dir(path)
    for v in found:
        print(v)
    print(f"{len(found)} violation(s) in {', '.join(str(p) for p in args.paths)} (TensorRT 10.3 support matrix, "
          "no If/Loop/OneHot/NonZero, no DOUBLE, no INT64 I/O, no value-dependent shapes, attention in the "
          "fusable form)")
    return 1 if found else 0


def add_lint(sub: argparse._SubParsersAction) -> None:
    """Register ``sam2rt lint``."""
    p = sub.add_parser("lint", help="check exported graphs against what TensorRT 10.3 can parse (no GPU needed)")
    p.add_argument("paths", type=Path, nargs="+", metavar="MODEL_DIR|FILE.onnx",
                   help="model directories (their four graphs and the pre/postprocessing graphs) or ONNX files")
    p.set_defaults(func=_cmd_lint)
