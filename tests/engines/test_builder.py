"""``engines.builder.build`` against a stand-in TensorRT module: the flags it sets and the returns it checks."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from sam2rt.engines import builder as B
from sam2rt.engines.config import BuildConfig
from sam2rt.engines.profiles import Profile
from sam2rt.errors import Sam2rtError

PROFILES = {"mask_logits": Profile((1, 1, 64, 64), (1, 1, 64, 64), (4, 1, 64, 64))}


class _Config:
    def __init__(self, profile_index: int) -> None:
        self.profile_index, self.flags, self.profiles = profile_index, {}, []
        self.progress_monitor = None

    def set_memory_pool_limit(self, pool, size) -> None:
        self.workspace = size

    def set_flag(self, flag) -> None:
        self.flags[flag] = True

    def clear_flag(self, flag) -> None:
        self.flags[flag] = False

    def add_optimization_profile(self, profile) -> int:
        self.profiles.append(profile)
        return self.profile_index


class _Profile:
    def __init__(self) -> None:
        self.shapes = {}

    def set_shape(self, name, lo, opt, hi) -> None:
        self.shapes[name] = (lo, opt, hi)


def _fake_trt(config: _Config) -> SimpleNamespace:
    """Just the TensorRT 10 API surface ``build`` touches."""
    builder = SimpleNamespace(create_network=lambda flags: "network", create_builder_config=lambda: config,
                              create_optimization_profile=_Profile,
                              build_serialized_network=lambda network, cfg: b"engine-bytes")
    parser = SimpleNamespace(parse_from_file=lambda path: True, num_errors=0)

    class Monitor:
        def __init__(self) -> None:
            pass

    return SimpleNamespace(
        __version__="10.3.0", Logger=type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None}),
        Builder=lambda logger: builder,
        OnnxParser=lambda network, logger: parser, MemoryPoolType=SimpleNamespace(WORKSPACE="workspace"),
        NetworkDefinitionCreationFlag=SimpleNamespace(STRONGLY_TYPED=1), BuilderFlag=SimpleNamespace(TF32="tf32"),
        IProgressMonitor=Monitor)


@pytest.fixture()
def onnx_file(tmp_path: Path) -> Path:
    path = tmp_path / "memory_encoder.onnx"
    path.write_bytes(b"stand-in")  # the fake parser never reads it
    return path


def _patch(monkeypatch, config: _Config) -> None:
    monkeypatch.setattr(B, "import_tensorrt", lambda: _fake_trt(config))


def test_tf32_cleared_by_default_and_profile_added(monkeypatch, onnx_file: Path) -> None:
    config = _Config(profile_index=0)
    _patch(monkeypatch, config)
    assert B.build(onnx_file, BuildConfig(), PROFILES, log=lambda s: None) == b"engine-bytes"
    assert config.flags == {"tf32": False}
    assert config.profiles[0].shapes["mask_logits"] == PROFILES["mask_logits"]
    config = _Config(profile_index=0)
    _patch(monkeypatch, config)
    B.build(onnx_file, BuildConfig(tf32=True), PROFILES, log=lambda s: None)
    assert config.flags == {"tf32": True}


def test_rejected_profile_is_a_clear_error(monkeypatch, onnx_file: Path) -> None:
    _patch(monkeypatch, _Config(profile_index=-1))  # TensorRT's answer to an invalid profile
    with pytest.raises(Sam2rtError, match=r"rejected the optimization profile of memory_encoder.onnx \(mask_logits "
                                          r"min \(1, 1, 64, 64\)"):
        B.build(onnx_file, BuildConfig(), PROFILES, log=lambda s: None)


def test_preprocessing_engines_never_get_tf32() -> None:
    cfg = BuildConfig(tf32=True)
    assert cfg.for_graph("image_encoder").tf32
    assert not cfg.for_graph("preprocess_vertical_first").tf32
    assert not cfg.for_graph("preprocess_horizontal_first").tf32
    assert not cfg.for_graph("postprocess_masks").tf32  # thresholds at 0 match the FP32 reference
