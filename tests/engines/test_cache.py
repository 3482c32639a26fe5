"""Engine manifest, cache keys and the refusal of foreign engines, with a fake builder (no TensorRT)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sam2rt import contract as C
from sam2rt.engines.cache import (DeviceInfo, cache_key, check_engine_manifest, load_engine_manifest, read_engine,
                                  stored_config)
from sam2rt.engines.config import BuildConfig
from sam2rt.engines.model_engines import build_model_engines
from sam2rt.errors import Sam2rtError
from sam2rt.manifest import load_manifest

DEVICE = DeviceInfo(gpu="NVIDIA Test GPU", compute_capability="8.9", tensorrt="10.9.0")


class FakeBuilder:
    """Stands in for ``engines.builder.build``: records calls, returns bytes naming the graph."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, onnx_path: Path, cfg: BuildConfig, profiles=None, log=print) -> bytes:
        self.calls.append(Path(onnx_path).stem)
        return f"engine:{Path(onnx_path).name}:{sorted(profiles or {})}".encode()


def _graphs(model: Path) -> dict[str, Path]:
    m = load_manifest(model)
    return {g.name: m.graph_path(g.name) for g in C.GRAPHS}


def test_build_writes_manifest_and_reuses_unchanged_engines(model: Path, tmp_path: Path) -> None:
    out, fake = tmp_path / "engines", FakeBuilder()
    cfg = BuildConfig(max_objects=4, max_points=3)
    build_model_engines(model, out, cfg, build_fn=fake, device=DEVICE, log=lambda s: None)
    assert sorted(fake.calls) == sorted([g.name for g in (*C.GRAPHS, *C.PREPROCESS_GRAPHS, C.POSTPROCESS)])
    assert (out / C.POSTPROCESS.filename).is_file()
    raw = load_engine_manifest(out, model)
    assert raw["device"] == DEVICE.to_json()
    assert raw["engines"]["mask_decoder"]["profiles"]["point_coords"]["max"] == [4, 5, 2]
    assert stored_config(raw) == cfg
    check_engine_manifest(raw, DEVICE, model, out, _graphs(model), "fp32")  # accepted
    fake.calls.clear()
    build_model_engines(model, out, cfg, build_fn=fake, device=DEVICE, log=lambda s: None)
    assert fake.calls == []  # every cache key matched
    (model / "memory_encoder.onnx").write_bytes(b"re-exported")
    build_model_engines(model, out, cfg, build_fn=fake, device=DEVICE, log=lambda s: None)
    assert fake.calls == ["memory_encoder"]


def test_cache_key_changes_with_what_the_engine_depends_on() -> None:
    cfg = BuildConfig()
    base = cache_key(DEVICE, "abc", "fp32", {"x": 1}, cfg)
    assert base == cache_key(DEVICE, "abc", "fp32", {"x": 1}, BuildConfig(timing_cache=Path("t.cache")))
    others = [cache_key(DeviceInfo("NVIDIA Test GPU", "8.7", "10.9.0"), "abc", "fp32", {"x": 1}, cfg),
              cache_key(DeviceInfo("NVIDIA Test GPU", "8.9", "10.3.0"), "abc", "fp32", {"x": 1}, cfg),
              cache_key(DEVICE, "abd", "fp32", {"x": 1}, cfg), cache_key(DEVICE, "abc", "fp16", {"x": 1}, cfg),
              cache_key(DEVICE, "abc", "fp32", {"x": 2}, cfg), cache_key(DEVICE, "abc", "fp32", {"x": 1},
                                                                          BuildConfig(max_objects=4))]
    assert base not in others and len(set(others)) == len(others)


@pytest.mark.parametrize("device, graph_change, precision, match", [
    (DeviceInfo("NVIDIA Jetson Orin", "8.7", "10.9.0"), False, "fp32", "specific to the GPU model"),
    (DeviceInfo("NVIDIA Test GPU", "8.9", "11.0.0"), False, "fp32", "specific to the TensorRT version"),
    (DEVICE, True, "fp32", "SHA-256 differs"),
    (DEVICE, False, "fp16", "built from a fp32 graph"),
])
def test_foreign_engines_are_refused_with_the_rebuild_command(model: Path, tmp_path: Path, device, graph_change,
                                                              precision, match) -> None:
    out = tmp_path / "engines"
    build_model_engines(model, out, BuildConfig(max_objects=3), build_fn=FakeBuilder(), device=DEVICE,
                        log=lambda s: None)
    if graph_change:
        (model / "mask_decoder.onnx").write_bytes(b"another graph")
    with pytest.raises(Sam2rtError, match=match) as e:
        check_engine_manifest(load_engine_manifest(out, model), device, model, out, _graphs(model), precision)
    assert f"sam2rt build {model} --out {out} --max-objects 3" in str(e.value)


def test_missing_and_corrupt_engines_are_refused(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "engines"
    with pytest.raises(Sam2rtError, match=f"build them first: sam2rt build {model} --out {out}"):
        load_engine_manifest(out, model)
    build_model_engines(model, out, BuildConfig(), build_fn=FakeBuilder(), device=DEVICE, log=lambda s: None)
    raw = load_engine_manifest(out, model)
    entry = raw["engines"]["image_encoder"]
    assert read_engine(out, entry, model).startswith(b"engine:")
    (out / entry["file"]).write_bytes(b"truncated")
    with pytest.raises(Sam2rtError, match="corrupt"):
        read_engine(out, entry, model)
    (out / "engines.json").write_text("{not json")
    with pytest.raises(Sam2rtError, match="rebuild the engines: sam2rt build"):
        load_engine_manifest(out, model)
    shutil.rmtree(out)
