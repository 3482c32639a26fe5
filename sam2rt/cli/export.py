"""`sam2rt export`: a model to four verified ONNX graphs."""

from __future__ import annotations

import argparse
from pathlib import Path

from sam2rt.cli.lint import lint_warnings
from sam2rt.errors import Sam2rtError


def _cmd_export(args: argparse.Namespace) -> int:
    from sam2rt.contract import BankConfig
    from sam2rt.export.exporter import ExportConfig, export_model

    if (args.checkpoint is None) == (not args.random_weights):
        raise Sam2rtError("pass exactly one of --checkpoint PATH or --random-weights [--seed N]")
    if args.checkpoint is None and args.seed is None:
        args.seed = 0
    bank = BankConfig(cond_slots=args.cond_slots, max_objects=args.max_objects, max_points=args.max_points)
    cfg = ExportConfig(model=args.model, out=args.out, image_size=args.image_size, checkpoint=args.checkpoint,
                       random_seed=args.seed if args.random_weights else None, verify=not args.no_verify, bank=bank,
                       attention=args.attention)
    manifest = export_model(cfg)
    print(f"wrote {manifest.parent} (4 graphs, constants, manifest)")
    lint_warnings(manifest.parent)
    return 0


def add_export(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--attention", choices=("fused", "cpu"), default="fused",
                   help="memory attention's form: fused (TensorRT's fusable pattern, default) or cpu (ONNX Runtime "
                        "CPU only; see docs/gpu.md)")
    p.set_defaults(func=_cmd_export)
