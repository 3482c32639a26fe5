"""Issue 12, model folders: graph SHA-256 (2), graph shapes vs manifest image size (3), manifest schema (10),
constants.npz (11). Each is a Sam2rtError naming the file or field, raised when the model is loaded."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from sam2rt import integrity
from sam2rt.errors import Sam2rtError
from sam2rt.manifest import load_manifest
from sam2rt.runtime.predictor import VideoPredictor


@pytest.fixture()
def digest_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty digest cache (in this test's folder, in memory and on disk)."""
    monkeypatch.setenv("SAM2RT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(integrity, "_memory_cache", {})
    return tmp_path / "cache" / integrity.DIGEST_CACHE_NAME


def _edit_manifest(model: Path, edit: Callable[[Any], Any]) -> None:
    path = model / "manifest.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def _stale_graph(model: Path, name: str) -> None:
    """Replace a graph by a valid ONNX file of another export (same graph, other metadata)."""
    onnx = pytest.importorskip("onnx")
    path = model / f"{name}.onnx"
    proto = onnx.load(str(path.resolve()))
    proto.doc_string = "from another export"
    path.unlink()
    onnx.save(proto, str(path))


# --------------------------------------------------------------------------- 2: graph SHA-256


def test_graph_sha256_mismatch_is_refused(model_copy: Path, digest_cache: Path) -> None:
    model = model_copy
    _stale_graph(model, "mask_decoder")
    with pytest.raises(Sam2rtError, match=r"mask_decoder.onnx does not match .*SHA-256.*Export the model again"):
        VideoPredictor(model)


def test_graph_digest_cache_skips_rehashing_and_sees_a_new_file(model_copy: Path, digest_cache: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    model = model_copy
    hashed: list[str] = []
    real = integrity.sha256_file
    monkeypatch.setattr(integrity, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    integrity.verify_graph_hashes(load_manifest(model))
    assert len(hashed) == 4 and digest_cache.is_file()
    monkeypatch.setattr(integrity, "_memory_cache", {})  # a new process: only the disk cache is left
    integrity.verify_graph_hashes(load_manifest(model))
    assert len(hashed) == 4
    _stale_graph(model, "memory_encoder")  # a rewritten file: new inode and mtime, hashed again
    with pytest.raises(Sam2rtError, match="memory_encoder.onnx does not match"):
        integrity.verify_graph_hashes(load_manifest(model))
    assert hashed[4:] == ["memory_encoder.onnx"]


def test_unwritable_digest_cache_is_skipped(exported_tiny_256: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("SAM2RT_CACHE", str(tmp_path / "file" / "cache"))  # cannot be created
    monkeypatch.setattr(integrity, "_memory_cache", {})
    integrity.verify_graph_hashes(load_manifest(exported_tiny_256))  # no error: the cache only saves time


# --------------------------------------------------------------------------- 3: graph shapes


def test_manifest_image_size_that_does_not_match_the_graphs(model_copy: Path) -> None:
    model = model_copy
    _edit_manifest(model, lambda m: {**m, "model": {**m["model"], "image_size": 512}})
    with pytest.raises(Sam2rtError, match=r"image_encoder.onnx: input 'image' axis 2 is 256.*image_size 512"):
        VideoPredictor(model)


# --------------------------------------------------------------------------- 10: manifest schema


def _drop(path: str) -> Callable[[Any], Any]:
    def edit(m: Any) -> Any:
        *parents, last = path.split(".")
        node = m
        for p in parents:
            node = node[p]
        del node[last]
        return m
    return edit


def _set(path: str, value: Any) -> Callable[[Any], Any]:
    def edit(m: Any) -> Any:
        *parents, last = path.split(".")
        node = m
        for p in parents:
            node = node[p]
        node[last] = value
        return m
    return edit


@pytest.mark.parametrize("edit, needle", [
    (lambda m: None, "must hold a JSON object, got None"),
    (lambda m: [], "must hold a JSON object, got []"),
    (_drop("model.image_size"), "field 'model.image_size' is missing"),
    (_set("model.image_size", "abc"), "field 'model.image_size' must be a multiple of 32, at least 128, got 'abc'"),
    (_set("model", "tiny"), "field 'model' must be a JSON object"),
    (_drop("tracking.num_maskmem"), "field 'tracking.num_maskmem' is missing"),
    (_set("tracking.pred_obj_scores", "yes"), "field 'tracking.pred_obj_scores' must be true or false"),
    (_set("bank.cond_slots", 1), "field 'bank.cond_slots' must be an integer >= 2"),
    (_set("graphs.image_encoder.file", "../../etc/passwd"), "field 'graphs.image_encoder.file' must be a file name"),
    (_set("graphs.mask_decoder.sha256", 7), "field 'graphs.mask_decoder.sha256' must be 64 lowercase hex digits"),
    (_drop("graphs.memory_encoder"), "field 'graphs.memory_encoder.file' is missing"),
    (_set("constants", None), "field 'constants' must be a file name"),
    (_set("precision", "fp8"), "field 'precision' must be one of fp32, fp16, int8"),
])
def test_manifest_schema_names_the_bad_field(edit: Callable[[Any], Any], needle: str, model_copy: Path) -> None:
    model = model_copy
    _edit_manifest(model, edit)
    with pytest.raises(Sam2rtError) as info:
        VideoPredictor(model)
    assert needle in str(info.value) and "manifest.json" in str(info.value)


def test_manifest_nested_too_deeply(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(Sam2rtError, match="not valid JSON"):
        load_manifest(tmp_path)


# --------------------------------------------------------------------------- 11: constants.npz


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _wrong_keys(path: Path) -> None:
    np.savez(path.with_suffix(""), something_else=np.zeros(3, np.float32))


def _pickle(path: Path) -> None:
    path.write_bytes(pickle.dumps({"no_obj_ptr": np.zeros(256)}))


def _object_array(path: Path) -> None:
    np.savez(path.with_suffix(""), no_obj_ptr=np.array([{"a": 1}], dtype=object), mask_downsample_weight=np.zeros(16),
             mask_downsample_bias=np.zeros(1))


@pytest.mark.parametrize("damage, needle", [
    (_truncate, "truncated or not an .npz archive"),
    (_wrong_keys, "lacks mask_downsample_bias, mask_downsample_weight, no_obj_ptr"),
    (_pickle, "pickled data"),
    (_object_array, "pickled data"),
])
def test_constants_npz_damaged(damage: Callable[[Path], None], needle: str, model_copy: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    model = model_copy
    damage(model / "constants.npz")
    unpickled: list[Any] = []
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: unpickled.append(a) or {})
    with pytest.raises(Sam2rtError) as info:
        integrity.load_constants(load_manifest(model))
    assert needle in str(info.value) and "constants.npz" in str(info.value)
    assert not unpickled  # never unpickled, not even to look
    assert os.path.getsize(model / "constants.npz") > 0
