"""`sam2rt export`: a model to four verified ONNX graphs.

The arguments are checked before torch is imported (which takes 10-20 s), so a bad request fails at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sam2rt.cli.lint import lint_warnings
from sam2rt.errors import Sam2rtError


def check_export_args(args: argparse.Namespace) -> None:
    """Everything about an export request that needs no torch: weights, model name, sizes, --out."""
    from sam2rt.contract import check_image_size
    from sam2rt.models import model_info
    from sam2rt.outputs import check_model_out, check_writable_dir

    if (args.checkpoint is None) == (not args.random_weights):
        raise Sam2rtError("pass exactly one of --checkpoint PATH or --random-weights [--seed N]")
    model_info(args.model)
    check_image_size(args.image_size)
    if args.cond_slots < 2:
        raise Sam2rtError(f"--cond-slots {args.cond_slots}: the memory bank needs at least 2 conditioning slots "
                          "to track (the official predictor attends to 2 or more prompted frames); use 2 or more "
                          "(default 4)")
    for flag, value in (("--max-objects", args.max_objects), ("--max-points", args.max_points)):
        if value < 1:
            raise Sam2rtError(f"{flag} {value}: must be at least 1")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise Sam2rtError(f"checkpoint {args.checkpoint} not found (or not a file); run `sam2rt download "
                          f"{args.model}` or pass an existing .pt file")
    check_model_out(args.out, args.force)
    try:
        check_writable_dir(args.out, "--out")
    except Sam2rtError as e:
        raise Sam2rtError(f"{e}; choose a writable --out") from None


def _cmd_export(args: argparse.Namespace) -> int:
    check_export_args(args)
    from sam2rt.cli.random_weights import say_random_weights
    from sam2rt.contract import BankConfig
    from sam2rt.export.exporter import ExportConfig, export_model
    from sam2rt.outputs import removing_created

    if args.checkpoint is None and args.seed is None:
        args.seed = 0
    bank = BankConfig(cond_slots=args.cond_slots, max_objects=args.max_objects, max_points=args.max_points)
    cfg = ExportConfig(model=args.model, out=args.out, image_size=args.image_size, checkpoint=args.checkpoint,
                       random_seed=args.seed if args.random_weights else None, verify=not args.no_verify, bank=bank,
                       attention=args.attention)
    with removing_created(args.out):  # an interrupted export leaves no empty folders
        manifest = export_model(cfg)
    print(f"wrote {manifest.parent} (4 graphs, constants, manifest)")
    say_random_weights(manifest.parent)
    lint_warnings(manifest.parent)
    return 0


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model to four verified ONNX graphs")
    p.add_argument("--model", required=True, help="model name, e.g. sam2.1_hiera_tiny")
    p.add_argument("--out", type=Path, required=True, help="output directory (a new one, or see --force)")
    p.add_argument("--force", action="store_true", help="replace the model already in --out")
    p.add_argument("--image-size", type=int, default=1024, help="model input size (multiple of 32)")
    p.add_argument("--checkpoint", type=Path, default=None, help="official .pt checkpoint")
    p.add_argument("--random-weights", action="store_true", help="seeded random weights (tests, no download)")
    p.add_argument("--seed", type=int, default=None, help="seed for --random-weights (default 0)")
    p.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    p.add_argument("--cond-slots", type=int, default=4, help="conditioning frames in the memory bank")
    p.add_argument("--max-objects", type=int, default=16, help="objects per video the runtime accepts; engine profiles")
    p.add_argument("--max-points", type=int, default=16, help="clicks per object and frame the runtime accepts; engine profiles")
    p.add_argument("--attention", choices=("fused", "cpu"), default="fused",
                   help="memory attention's form: fused (TensorRT's fusable pattern, default) or cpu (ONNX Runtime "
                        "CPU only; see docs/gpu.md)")
    p.set_defaults(func=_cmd_export)
