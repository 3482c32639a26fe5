"""``sam2rt convert``: an FP16 mixed-precision or int8-cpu variant of an FP32 export (INT8 QDQ: ``sam2rt calibrate``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sam2rt.errors import Sam2rtError


def _cmd_convert(args: argparse.Namespace) -> int:
    from sam2rt.calibration.variant import check_precision
    from sam2rt.outputs import check_model_out, removing_created

    precision = check_precision(args.precision)
    check_model_out(args.out, args.force, source=args.model_dir)
    with removing_created(args.out):  # an interrupted conversion leaves no empty folders
        return _convert(args, precision)


def _convert(args: argparse.Namespace, precision: str) -> int:
    if precision == "int8":
        raise Sam2rtError("INT8 graphs need calibration data: run `sam2rt calibrate MODEL_DIR --data VIDEO --out DIR`")
    if precision == "fp32":
        raise Sam2rtError("the directory written by `sam2rt export` already is the FP32 model; "
                          "choose --precision fp16 or int8-cpu")
    fp16_only = [f for f, v in (("--keep-op", args.keep_op), ("--fp32-attention", args.fp32_attention),
                                 ("--fp16-rope", args.fp16_rope), ("--fp16-score-head", args.fp16_score_head)) if v]
    if precision == "int8-cpu" and fp16_only:
        raise Sam2rtError(f"{', '.join(fp16_only)} only apply to --precision fp16; int8-cpu takes --graphs, "
                          "--keep-node and --reduce-range")
    if precision == "fp16" and args.reduce_range:
        raise Sam2rtError("--reduce-range only applies to --precision int8-cpu; drop it for fp16")
    if precision == "int8-cpu":
        from sam2rt.calibration.int8_cpu import CpuInt8Config, convert_int8_cpu

        defaults = CpuInt8Config()
        manifest = convert_int8_cpu(args.model_dir, args.out, CpuInt8Config(
            graphs=tuple(args.graphs) if args.graphs else defaults.graphs,
            reduce_range=args.reduce_range, exclude=tuple(args.keep_node)))
        print(f"wrote {manifest.parent} ({precision}, for ONNX Runtime CPU); check it with "
              f"`sam2rt verify --model {manifest.parent} ...`")
        return 0
    from sam2rt.calibration.fp16 import FP32_OPS, Fp16Config, convert_model

    cfg = Fp16Config(keep_ops=tuple(dict.fromkeys(FP32_OPS + tuple(args.keep_op))), keep_nodes=tuple(args.keep_node),
                     attention_fp32=args.fp32_attention, rope_fp32=not args.fp16_rope,
                     score_head_fp32=not args.fp16_score_head,
                     graphs=tuple(args.graphs) if args.graphs else Fp16Config().graphs)
    manifest = convert_model(args.model_dir, args.out, cfg)
    from sam2rt.cli.lint import lint_warnings

    lint_warnings(manifest.parent)
    print(f"wrote {manifest.parent} ({precision}); check it with `sam2rt verify --model {manifest.parent} ...`")
    return 0


def add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="make an FP16 mixed-precision or int8-cpu variant of an exported model")
    p.add_argument("model_dir", type=Path, help="FP32 model directory from `sam2rt export`")
    p.add_argument("--precision", required=True,
                   help="fp16, or int8-cpu (dynamic INT8 for ONNX Runtime's CPU provider); int8 QDQ: `sam2rt calibrate`")
    p.add_argument("--out", type=Path, required=True, help="output directory for the variant (a new one)")
    p.add_argument("--force", action="store_true", help="replace the model already in --out (never the source)")
    p.add_argument("--graphs", nargs="+", default=None, metavar="GRAPH",
                   help="graphs to convert (default fp16: all four; int8-cpu: all but mask_decoder); "
                        "the others stay FP32")
    p.add_argument("--keep-op", action="append", default=[], metavar="OP",
                   help="also keep this op type in FP32 (repeatable); LayerNorm, reductions, Sin/Cos always are")
    p.add_argument("--keep-node", action="append", default=[], metavar="NAME",
                   help="keep this node in FP32 (repeatable, exact ONNX node name)")
    p.add_argument("--reduce-range", action="store_true",
                   help="int8-cpu: 7-bit weights, for AVX2 CPUs without VNNI (saturation); off on VNNI CPUs")
    p.add_argument("--fp32-attention", action="store_true",
                   help="keep the attention logits (Q·Kᵀ, scale, mask) and Softmax in FP32; default FP16, which "
                        "TensorRT can fuse into one attention kernel (measured mean IoU 0.9988 either way)")
    p.add_argument("--fp16-rope", action="store_true", help="compute the RoPE rotations in FP16 too")
    p.add_argument("--fp16-score-head", action="store_true",
                   help="compute the decoder's object-score head in FP16 too (default FP32: its logit decides "
                        "presence; measured in docs/precision.md)")
    p.set_defaults(func=_cmd_convert)
