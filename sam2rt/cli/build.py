"""``sam2rt build``: TensorRT engines for an exported model (one per graph), cached by GPU/TensorRT/graph hash.

Exits 2 with the install command where TensorRT or a GPU is missing. The work is
``sam2rt.engines.model_engines.build_model_engines``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# What users run (a robot tracks a handful of objects from a camera of at most 1080p): the profile maxima set
# each context's scratch, and attention at 16 objects and 1024 px needs GiBs. Larger needs: pass the flags.
DEFAULT_OBJECTS = 8
DEFAULT_FRAME_SIDE = 1920


def _cmd_build(args: argparse.Namespace) -> int:
    from sam2rt.engines.builder import import_tensorrt
    from sam2rt.engines.cache import default_engine_dir
    from sam2rt.engines.config import BuildConfig
    from sam2rt.engines.model_engines import build_model_engines
    from sam2rt.manifest import load_manifest

    manifest = load_manifest(args.model_dir)
    import_tensorrt()  # the install command, before any work
    objects = args.max_objects if args.max_objects is not None else min(DEFAULT_OBJECTS, manifest.bank.max_objects)
    cfg = BuildConfig.for_bank(manifest.bank, max_objects=objects, max_points=args.max_points,
                               workspace_gib=args.workspace, timing_cache=args.timing_cache, tf32=args.tf32,
                               max_frame_side=args.max_frame_side)
    out = args.out if args.out is not None else default_engine_dir(args.model_dir)
    build_model_engines(args.model_dir, out, cfg)
    print(memory_line(args.model_dir, out))
    return 0


def memory_line(model_dir: Path, engine_dir: Path) -> str:
    """What ``sam2rt build`` prints last: the device memory a process with one live stream needs, from the
    engines' own figures (``runtime.model.engine_memory``)."""
    from sam2rt.runtime.model import engine_memory

    m = engine_memory(model_dir, engine_dir)
    return (f"device memory from the engines: {m['engines_mib']:.0f} MiB of engines once per process; per live "
            f"stream ({m['objects']} objects, {m['frame']} frames): {m['scratch_per_stream_mib']:.0f} MiB scratch + "
            f"{m['buffers_per_stream_mib']:.0f} MiB buffers (+ {m['pinned_per_stream_mib']:.0f} MiB pinned host); "
            f"one stream in all {m['one_stream_mib']:.0f} MiB")


def add_build(sub: argparse._SubParsersAction) -> None:
    """Register the ``build`` subcommand."""
    p = sub.add_parser("build", help="build TensorRT engines for an exported model (needs TensorRT and a GPU)")
    p.add_argument("model_dir", type=Path, help="exported model directory (sam2rt export)")
    p.add_argument("--out", type=Path, default=None, help="engine directory (default MODEL_DIR/engines, "
                                                          "where --backend trt looks)")
    p.add_argument("--max-objects", type=int, default=None, help="objects per call the engines accept (default "
                                                                 f"{DEFAULT_OBJECTS}, at most the model's bank)")
    p.add_argument("--max-frame-side", type=int, default=DEFAULT_FRAME_SIDE,
                   help=f"largest frame side the GPU preprocessing takes (default {DEFAULT_FRAME_SIDE})")
    p.add_argument("--max-points", type=int, default=None, help="clicks per object (a box adds 2) (default 16)")
    p.add_argument("--workspace", type=float, default=4.0, help="TensorRT workspace limit in GiB (default 4)")
    p.add_argument("--timing-cache", type=Path, default=None, help="persistent timing cache file (faster rebuilds)")
    p.add_argument("--tf32", action="store_true",
                   help="let FP32 matmuls/convolutions run in TF32 (faster on Ampere+, not verified on CPU; "
                        "never for the pre/postprocessing engines)")
    p.set_defaults(func=_cmd_build)
