"""Build (or reuse) every engine of a model directory: the four graphs, the two GPU preprocessing graphs and the
GPU postprocessing graph.

``build_model_engines`` is the work of ``sam2rt build``; the builder and the device probe are parameters,
so the caching and the manifest are tested without TensorRT.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable

from sam2rt import contract as C
from sam2rt.engines import builder as B
from sam2rt.engines.cache import (DeviceInfo, cache_key, engine_entry, engine_manifest, save_engine_manifest,
                                  write_atomic, ENGINE_MANIFEST)
from sam2rt.engines.config import BuildConfig
from sam2rt.engines.postprocess import postprocess_onnx_bytes
from sam2rt.engines.preprocess import preprocess_onnx_bytes, preprocess_spec
from sam2rt.engines.profiles import graph_profiles
from sam2rt.errors import Sam2rtError
from sam2rt.manifest import load_manifest, sha256_file

BuildFn = Callable[..., bytes]  # build(onnx_path, config, profiles=..., log=...) -> engine bytes


def build_model_engines(model_dir: str | Path, out: str | Path, cfg: BuildConfig,
                        build_fn: BuildFn | None = None, device: DeviceInfo | None = None,
                        log: Callable[[str], None] = print) -> Path:
    """Build one engine per graph into ``out`` and write ``out/engines.json``; returns its path.

    An engine whose cache key (device, TensorRT, ONNX SHA-256, precision, profiles, config) and file hash
    match the existing engines.json is kept as is. The preprocessing graphs are written as
    out/preprocess_vertical_first.onnx and out/preprocess_horizontal_first.onnx, the postprocessing graph as
    out/postprocess_masks.onnx.
    """
    manifest = load_manifest(model_dir)
    if manifest.precision == "int8-cpu":  # dynamic-quantization ops (MatMulInteger, ...) TensorRT does not parse
        raise Sam2rtError(f"{manifest.directory} is the int8-cpu variant, made for ONNX Runtime's CPU provider; "
                          "build TensorRT engines from the FP32 export, its fp16 (`sam2rt convert`) or its int8 QDQ "
                          "(`sam2rt calibrate`) variant")
    if build_fn is None:
        B.import_tensorrt()  # fail before anything is written when TensorRT is missing
    build_fn = build_fn or B.build
    device = device or B.current_device()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sources = {spec.name: (spec, manifest.graph_path(spec.name), manifest.precision) for spec in C.GRAPHS}
    for vertical_first in (True, False):
        spec = preprocess_spec(vertical_first)
        prep = out / spec.filename
        write_atomic(prep, preprocess_onnx_bytes(manifest.image_size, vertical_first))
        sources[spec.name] = (spec, prep, "fp32")
    post = out / C.POSTPROCESS.filename
    write_atomic(post, postprocess_onnx_bytes(manifest.image_size))
    sources[C.POSTPROCESS.name] = (C.POSTPROCESS, post, "fp32")
    old = _old_entries(out)
    entries = {}
    log(f"building TensorRT engines for {manifest.model_name} @{manifest.image_size} ({manifest.precision}) on "
        f"{device.gpu} (compute {device.compute_capability}), TensorRT {device.tensorrt} -> {out}")
    for i, (name, (spec, onnx_path, precision)) in enumerate(sources.items(), 1):
        graph_cfg = cfg.for_graph(name)  # TF32 never on for the pre/postprocessing graphs
        shapes = graph_profiles(spec, manifest.image_size, cfg, manifest.memory_tokens)
        profiles = {k: p.to_json() for k, p in shapes.items()}
        file = f"{name}.engine"
        key = cache_key(device, sha256_file(onnx_path), precision, profiles, graph_cfg)
        prior = old.get(name)
        if prior is not None and prior.get("key") == key and _file_ok(out / file, prior.get("engine_sha256")):
            log(f"[{i}/{len(sources)}] {name}: up to date (cache key {key[:12]})")
            entries[name] = prior
            continue
        log(f"[{i}/{len(sources)}] {name}: building from {onnx_path.name}")
        start = time.perf_counter()
        data = build_fn(onnx_path, graph_cfg, log=log,
                        profiles=graph_profiles(spec, manifest.image_size, cfg, manifest.memory_tokens))
        write_atomic(out / file, data)
        entries[name] = engine_entry(name, onnx_path, file, data, device, precision, profiles, graph_cfg)
        log(f"[{i}/{len(sources)}] {name}: {len(data) / 2**20:.1f} MiB in {time.perf_counter() - start:.0f} s")
        # after each engine, so an interrupted build keeps what is done
        save_engine_manifest(out, engine_manifest(Path(model_dir), device, cfg, manifest.image_size,
                                                  {**old, **entries}))
    path = save_engine_manifest(out, engine_manifest(Path(model_dir), device, cfg, manifest.image_size, entries))
    log(f"wrote {path}")
    return path


def _old_entries(out: Path) -> dict:
    try:
        return dict(json.loads((out / ENGINE_MANIFEST).read_text()).get("engines", {}))
    except (OSError, ValueError, AttributeError):
        return {}


def _file_ok(path: Path, digest: str | None) -> bool:
    return path.is_file() and digest == hashlib.sha256(path.read_bytes()).hexdigest()
