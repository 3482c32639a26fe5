"""`sam2rt download`: fetch an official checkpoint into the cache."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_download(args: argparse.Namespace) -> int:
    from sam2rt.export.download import download

    path = download(args.model, cache_dir=args.cache_dir)
    print(path)
    return 0


def add_download(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="fetch an official checkpoint into the cache")
    p.add_argument("model", help="model name, e.g. sam2.1_hiera_tiny")
    p.add_argument("--cache-dir", type=Path, default=None, help="default: $SAM2RT_CACHE or ~/.cache/sam2rt")
    p.set_defaults(func=_cmd_download)
