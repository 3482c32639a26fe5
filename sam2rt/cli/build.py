"""``sam2rt build``: TensorRT engines for an exported model (one per graph), cached by GPU/TensorRT/graph hash.

Exits 2 with the install command where TensorRT or a GPU is missing. The work is
``sam2rt.engines.model_engines.build_model_engines``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_build(args: argparse.Namespace) -> int:
    from sam2rt.engines.builder import import_tensorrt
    from sam2rt.engines.cache import default_engine_dir
    from sam2rt.engines.config import BuildConfig
    from sam2rt.engines.model_engines import build_model_engines
    from sam2rt.manifest import load_manifest

    manifest = load_manifest(args.model_dir)
    import_tensorrt()  # the install command, before any work
    cfg = BuildConfig.for_bank(manifest.bank, max_objects=args.max_objects, max_points=args.max_points,
                               workspace_gib=args.workspace, timing_cache=args.timing_cache, tf32=args.tf32)
    out = args.out if args.out is not None else default_engine_dir(args.model_dir)
    build_model_engines(args.model_dir, out, cfg)
    return 0


def add_build(sub: argparse._SubParsersAction) -> None:
    """Register the ``build`` subcommand."""
    p = sub.add_parser("build", help="build TensorRT engines for an exported model (needs TensorRT and a GPU)")
    p.add_argument("model_dir", type=Path, help="exported model directory (sam2rt export)")
    p.add_argument("--out", type=Path, default=None, help="engine directory (default MODEL_DIR/engines, "
                                                          "where --backend trt looks)")
    p.add_argument("--max-objects", type=int, default=None, help="objects per call the engines accept "
                                                                 "(default: the model's bank, 16)")
    p.add_argument("--max-points", type=int, default=None, help="clicks per object (a box adds 2) (default 16)")
    p.add_argument("--workspace", type=float, default=4.0, help="TensorRT workspace limit in GiB (default 4)")
    p.add_argument("--timing-cache", type=Path, default=None, help="persistent timing cache file (faster rebuilds)")
    p.add_argument("--tf32", action="store_true",
                   help="let FP32 matmuls/convolutions run in TF32 (faster on Ampere+, not verified on CPU; "
                        "never for the pre/postprocessing engines)")
    p.set_defaults(func=_cmd_build)
