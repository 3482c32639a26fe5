"""A model folder is checked when it is loaded: graphs match the manifest, constants are what they claim.

Stale or mixed graphs (an interrupted re-export, files copied from another export) track with wrong masks
and no error, so every graph's SHA-256 is compared with the manifest's. Hashing reads every byte: about
0.4 s for the 109 MB image encoder of a tiny model, and seconds for the large model, so the digest of each
file is cached by (size, mtime, inode) -- in this process and in ``<cache root>/graph-digests.json``
(``$SAM2RT_CACHE`` or ``~/.cache/sam2rt``) across runs. A file rewritten in any way gets a new inode or
mtime and is hashed again; a cache that cannot be written is simply not kept.

Runtime module: imports numpy and the standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from sam2rt import contract as C
from sam2rt.errors import Sam2rtError
from sam2rt.manifest import Manifest, check_runtime_fields, sha256_file
from sam2rt.models import default_cache_dir

DIGEST_CACHE_NAME = "graph-digests.json"
_memory_cache: dict[str, tuple[tuple[int, int, int], str]] = {}

# constants.npz: name -> number of float32 values (shapes are flattened by the runtime anyway)
CONSTANT_SIZES = {"no_obj_ptr": C.HIDDEN_DIM, "mask_downsample_weight": 16, "mask_downsample_bias": 1}


def _file_key(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


def _cache_path() -> Path:
    return default_cache_dir() / DIGEST_CACHE_NAME


def _read_disk_cache() -> dict[str, Any]:
    try:
        data = json.loads(_cache_path().read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_disk_cache(entries: dict[str, Any]) -> None:
    """Atomic write of the digest cache, without entries of files that are gone; a cache that cannot be
    written (read-only home, full disk) is skipped: it only saves time."""
    path = _cache_path()
    live = {name: e for name, e in entries.items() if os.path.exists(name)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".graph-digests-")
    except OSError:
        return
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(live, f)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def file_digest(path: Path, disk: dict[str, Any] | None = None) -> tuple[str, bool]:
    """SHA-256 of ``path`` and whether it had to be computed (False: taken from a cache)."""
    key, name = _file_key(path), str(path.resolve())
    cached = _memory_cache.get(name)
    if cached is not None and cached[0] == key:
        return cached[1], False
    entry = (disk or {}).get(name)
    if isinstance(entry, dict) and entry.get("key") == list(key) and isinstance(entry.get("sha256"), str):
        _memory_cache[name] = (key, entry["sha256"])
        return entry["sha256"], False
    digest = sha256_file(path)
    _memory_cache[name] = (key, digest)
    return digest, True


def verify_graph_hashes(manifest: Manifest) -> None:
    """Every graph's SHA-256 equals the manifest's, or a Sam2rtError names the graph and the fix."""
    disk = _read_disk_cache()
    computed = False
    for spec in C.GRAPHS:
        path = manifest.graph_path(spec.name)
        digest, fresh = file_digest(path, disk)
        computed |= fresh
        if digest != manifest.raw["graphs"][spec.name]["sha256"]:
            raise Sam2rtError(
                f"{path} does not match {manifest.path} (its SHA-256 differs from the one recorded at export): "
                "the folder mixes graphs of different exports, e.g. after an interrupted re-export. Export the "
                f"model again into an empty folder: sam2rt export --model {manifest.model_name} --out NEW_DIR")
    if computed:
        for spec in C.GRAPHS:
            path = manifest.graph_path(spec.name)
            key, digest = _memory_cache[str(path.resolve())]
            disk[str(path.resolve())] = {"key": list(key), "sha256": digest}
        _write_disk_cache(disk)


def check_model(manifest: Manifest) -> None:
    """Everything tracking reads from a model folder, before any graph is loaded."""
    check_runtime_fields(manifest)
    verify_graph_hashes(manifest)


_ZIP_MAGIC, _NPY_MAGIC = b"PK\x03\x04", b"\x93NUMPY"


def _read_npz(manifest: Manifest) -> tuple[dict[str, np.ndarray], Path, str]:
    """Every array of constants.npz, read without unpickling; with the path and the fix for messages."""
    path = manifest.constants_path
    fix = f"re-export the model: sam2rt export --model {manifest.model_name} --out NEW_DIR"
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise Sam2rtError(f"cannot read {path} ({e.strerror}); {fix}") from None
    if not magic.startswith((_ZIP_MAGIC, _NPY_MAGIC)):  # text, an image, a pickle: numpy would say "pickled"
        kind = "pickled data, which sam2rt never loads (it could run any code)" if magic[:1] == b"\x80" else \
            "not an .npz archive (it does not start like a zip file)"
        raise Sam2rtError(f"{path} is {kind}; {fix}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            found = {k: npz[k] for k in npz.files}
    except ValueError as e:  # an object array inside the archive
        raise Sam2rtError(f"{path} holds pickled data, which sam2rt never loads (it could run any code); {fix}") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise Sam2rtError(f"{path} is truncated or not an .npz archive ({type(e).__name__}); {fix}") from None
    except AttributeError:  # np.load returned a bare array (a .npy file), which has no .files
        raise Sam2rtError(f"{path} is a single .npy array, not an .npz archive of named constants; {fix}") from None
    return found, path, fix


def load_constants(manifest: Manifest) -> dict[str, np.ndarray]:
    """constants.npz as float32 arrays of the expected sizes; never unpickles (``allow_pickle=False``)."""
    return _checked_constants(*_read_npz(manifest))


def no_mem_embed(manifest: Manifest) -> np.ndarray:
    """The image predictor's constant (256,) float32 from constants.npz, checked like the others."""
    found, path, fix = _read_npz(manifest)
    arr = found.get("no_mem_embed")
    if arr is None:
        raise Sam2rtError(f"{path} lacks no_mem_embed (exported by an older sam2rt without the image "
                          f"predictor's constants); {fix}")
    if arr.dtype.kind != "f" or arr.size != C.HIDDEN_DIM or not np.all(np.isfinite(arr)):
        raise Sam2rtError(f"{path}: no_mem_embed must be {C.HIDDEN_DIM} finite floats, got {arr.dtype} {arr.shape}; {fix}")
    return arr.astype(np.float32).reshape(-1)


def _checked_constants(found: Mapping[str, np.ndarray], path: Path, fix: str) -> dict[str, np.ndarray]:
    missing = sorted(set(CONSTANT_SIZES) - set(found))
    if missing:
        raise Sam2rtError(f"{path} lacks {', '.join(missing)} (it has {sorted(found)}); {fix}")
    out = {}
    for name, size in CONSTANT_SIZES.items():
        arr = found[name]
        if arr.dtype.kind != "f" or arr.size != size or not np.all(np.isfinite(arr)):
            raise Sam2rtError(f"{path}: {name} must be {size} finite floats, got {arr.dtype} {arr.shape}; {fix}")
        out[name] = arr.astype(np.float32)
    return out


def check_graph_shapes(runners: Mapping[str, Any], manifest: Manifest) -> None:
    """The graphs' fixed input sizes equal what the manifest's image size implies.

    Checked on ONNX Runtime sessions (TensorRT engines are built from these graphs and check themselves);
    a mismatch otherwise surfaces as an ONNX Runtime traceback on the first frame.
    """
    dims = C.resolve_dims(manifest.image_size)
    for spec in C.GRAPHS:
        session = getattr(runners.get(spec.name), "session", None)
        if session is None:
            continue
        declared = {a.name: a.shape for a in session.get_inputs()}
        for t in spec.inputs:
            for axis, (want, got) in enumerate(zip(t.resolve(dims), declared.get(t.name, ()))):
                if isinstance(want, int) and isinstance(got, int) and want != got:
                    raise Sam2rtError(
                        f"{manifest.graph_path(spec.name)}: input {t.name!r} axis {axis} is {got}, but "
                        f"{manifest.path} says image_size {manifest.image_size} (so {want}); the manifest "
                        "does not belong to these graphs: export the model again into an empty folder")
