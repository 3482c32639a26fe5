"""``sam2rt calibrate``: INT8 (QDQ) graphs from an FP32 export, calibrated on sampled video frames.

The flags map one-to-one onto :class:`sam2rt.calibration.int8.CalibrationConfig`; the work is
:func:`sam2rt.calibration.int8.calibrate_model`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sam2rt.errors import Sam2rtError

_GRAPHS = ("image_encoder", "memory_attention", "mask_decoder", "memory_encoder")  # contract order
_EPILOG = """\
examples:
  sam2rt calibrate models/tiny --data videos/ images/ --out models/tiny_int8
  sam2rt calibrate models/tiny --data a.mp4 b.mp4 --frames 96 --method percentile --out models/tiny_int8
  sam2rt calibrate models/tiny --data a.mp4 --graphs image_encoder --exclude '*/patch_embed/*' --out DIR

The captured calibration inputs are cached in $SAM2RT_CACHE/calibration (default ~/.cache/sam2rt) and
reused when the FP32 graphs, the sampled clips and the capture settings are the same.
"""


def _graphs(text: str) -> tuple[str, ...]:
    if text.strip() in ("none", ""):
        return ()
    names = tuple(g.strip() for g in text.split(",") if g.strip())
    if names == ("all",):
        return _GRAPHS
    return names


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from sam2rt.calibration.int8 import CalibrationConfig, calibrate_model

    defaults = CalibrationConfig()
    cfg = CalibrationConfig(
        frames=args.frames, clip_len=args.clip_len, method=args.method,
        graphs=defaults.graphs if args.graphs is None else _graphs(args.graphs),
        op_types=defaults.op_types if args.op_types is None else tuple(args.op_types.split(",")),
        exclude=tuple(args.exclude) if args.exclude else defaults.exclude,
        weight_matmul_only=not args.all_matmuls, fp16_base=not args.fp32_base, percentile=args.percentile,
        objects=args.objects,
        max_samples=args.max_samples, seed=args.seed, cache_dir=args.cache_dir, use_cache=not args.no_cache)
    if not args.data:
        raise Sam2rtError("pass calibration data with --data VIDEO_OR_DIR [...]")
    from sam2rt.outputs import check_model_out, removing_created

    check_model_out(args.out, args.force, source=args.model_dir)
    with removing_created(args.out):  # an interrupted calibration leaves no empty folders
        manifest = calibrate_model(args.model_dir, args.data, args.out, cfg)
    from sam2rt.cli.lint import lint_warnings

    lint_warnings(manifest.parent)
    base = "FP16" if cfg.fp16_base else "FP32"
    print(f"wrote {manifest.parent} (INT8 QDQ on the {base} graphs: {', '.join(cfg.graphs) or 'no graphs'}; "
          f"the rest {base})")
    return 0


def add_calibrate(sub: argparse._SubParsersAction) -> None:
    """Register ``sam2rt calibrate``."""
    p = sub.add_parser("calibrate", help="INT8 QDQ graphs from an FP32 export, calibrated on video frames",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", type=Path, help="FP32 model directory (sam2rt export)")
    p.add_argument("--data", type=Path, nargs="+", required=True,
                   help="video files, JPEG frame folders, images, or folders of them")
    p.add_argument("--out", type=Path, required=True, help="output directory for the INT8 model (a new one)")
    p.add_argument("--force", action="store_true", help="replace the model already in --out (never the source)")
    p.add_argument("--frames", type=int, default=48, help="calibration frames in all (default 48)")
    p.add_argument("--clip-len", type=int, default=8, help="consecutive frames tracked per clip (default 8)")
    p.add_argument("--method", default="percentile", help="percentile (default), minmax or entropy")
    p.add_argument("--percentile", type=float, default=99.999, help="for --method percentile (default 99.999)")
    p.add_argument("--graphs", default=None, metavar="G1,G2|all|none",
                   help="graphs to quantize (default image_encoder,memory_attention,memory_encoder: the "
                        f"mask decoder stays FP32, measured); any of {', '.join(_GRAPHS)}")
    p.add_argument("--op-types", default=None, metavar="OP1,OP2",
                   help="op types to quantize (default Conv,ConvTranspose,MatMul,Gemm)")
    p.add_argument("--all-matmuls", action="store_true",
                   help="also quantize activation x activation MatMuls (attention); default: weight MatMuls only")
    p.add_argument("--fp32-base", action="store_true",
                   help="keep the graphs FP32 around the Q/DQ (default: FP16 graphs with FP16 scales, so everything "
                        "outside Q/DQ runs in FP16 in a strongly typed TensorRT network)")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="keep nodes matching GLOB or GRAPH:GLOB (node names, fnmatch) in float; repeatable; replaces the default list")
    p.add_argument("--objects", type=int, default=2, help="objects prompted per clip while capturing (default 2)")
    p.add_argument("--max-samples", type=int, default=64, help="captured runs kept per graph (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed for the automatic prompts (default 0)")
    p.add_argument("--cache-dir", type=Path, default=None, help="default: $SAM2RT_CACHE or ~/.cache/sam2rt")
    p.add_argument("--no-cache", action="store_true", help="capture again and do not write the cache")
    p.set_defaults(func=_cmd_calibrate)
