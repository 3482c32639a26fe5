"""Official SAM 2 checkpoints: ``download`` fetches Meta's checkpoint into a cache (atomic, resumable,
stdlib only) and checks a cached one before it is used."""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from sam2rt.errors import Sam2rtError
from sam2rt.manifest import sha256_file
from sam2rt.models import default_cache_dir, model_info
from sam2rt.outputs import check_writable_dir

_CHUNK = 1 << 20


def _network_error(url: str, detail: str) -> Sam2rtError:
    return Sam2rtError(
        f"cannot download {url} ({detail}): the network is unreachable or the server refused. "
        "Download the file on a machine with network access and pass `--checkpoint PATH`, "
        "or build a model with seeded random weights: `--random-weights --seed N`."
    )


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    """Open ``url``, asking for the bytes from ``offset`` on when resuming."""
    request = urllib.request.Request(url, headers={"User-Agent": "sam2rt"})
    if offset > 0:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset > 0:
            raise  # the partial file is stale: the caller restarts from zero
        raise _network_error(url, f"HTTP {exc.code} {exc.reason}") from exc
    except OSError as exc:  # URLError, refused, DNS failure, timeout
        raise _network_error(url, str(getattr(exc, "reason", exc))) from exc


def _resume_offset(response: http.client.HTTPResponse, offset: int) -> int:
    """Where the body starts: ``offset`` on a matching 206, 0 when the server sends it all."""
    if response.status != 206:
        return 0
    content_range = response.headers.get("Content-Range", "")
    start = content_range.removeprefix("bytes ").split("-", 1)[0]
    return offset if start.strip() == str(offset) else -1


def _expected_total(response: http.client.HTTPResponse, start: int) -> int | None:
    """The full file size the server announced, if any."""
    total = response.headers.get("Content-Range", "").rpartition("/")[2]
    if total.isdigit():
        return int(total)
    length = response.headers.get("Content-Length")
    return start + int(length) if length and length.isdigit() else None


def _stream(response: http.client.HTTPResponse, part: Path, start: int, bar: tqdm) -> int:
    """Append (or write from zero) the body to ``part``; fsync; return the bytes on disk."""
    with open(part, "ab" if start else "wb") as f:
        try:
            for block in iter(lambda: response.read(_CHUNK), b""):
                f.write(block)
                bar.update(len(block))
        finally:
            f.flush()
            os.fsync(f.fileno())
    return part.stat().st_size


def _fetch(url: str, part: Path, name: str, progress: bool, timeout: float) -> None:
    """Download ``url`` into ``part`` (resuming it when possible) and check its size."""
    for _attempt in range(2):
        offset = part.stat().st_size if part.exists() else 0
        try:
            response = _open(url, offset, timeout)
        except urllib.error.HTTPError:  # 416: our partial file does not fit the server's file
            part.unlink()
            continue
        with response:
            start = _resume_offset(response, offset)
            if start < 0:  # a 206 for a range we did not ask for: start over
                part.unlink()
                continue
            total = _expected_total(response, start)
            with tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=name, disable=not progress) as bar:
                try:
                    size = _stream(response, part, start, bar)
                except (OSError, http.client.HTTPException) as exc:
                    raise _network_error(url, f"interrupted: {exc}; re-run to resume") from exc
        _check_size(url, part, size, total)
        return
    raise _network_error(url, "the server rejected resuming twice")


def _check_size(url: str, part: Path, size: int, total: int | None) -> None:
    if total is None or size == total:
        return
    if size > total:
        part.unlink()
        raise Sam2rtError(f"downloaded {size} bytes from {url} but expected {total}; re-run to retry")
    raise Sam2rtError(
        f"download of {url} stopped at {size} of {total} bytes; re-run the same command to "
        f"resume from {part}, or download it elsewhere and pass `--checkpoint PATH`"
    )


def download(
    name: str,
    cache_dir: Path | None = None,
    progress: bool = True,
    timeout: float = 30,
    url: str | None = None,
) -> Path:
    """Fetch model ``name``'s official checkpoint into ``cache_dir/checkpoints/NAME.pt``.

    Returns the cached file at once if it passes ``cached_checkpoint_problem``; a cached file that does not
    (empty, truncated, changed since download) is downloaded again and replaced only once the new copy is
    complete. Otherwise streams to ``NAME.pt.part`` (resuming an existing one with an HTTP Range request),
    fsyncs, checks the size against Content-Length, records size and SHA-256 in ``NAME.pt.json`` and renames
    it into place. ``url`` overrides the registry URL (tests, mirrors).
    """
    info = model_info(name)
    root = cache_dir or default_cache_dir()
    check_writable_dir(root, "--cache-dir")
    target = root / "checkpoints" / f"{name}.pt"
    problem = cached_checkpoint_problem(target) if target.is_file() else None
    if target.is_file() and problem is None:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    try:
        _fetch(url or info.url, part, name, progress, timeout)
    except Sam2rtError as e:
        if problem is None:
            raise
        raise Sam2rtError(f"the cached {target} is unusable ({problem}) and downloading it again failed: {e}") from None
    if info.git_blob_sha1 is not None and git_blob_sha1(part) != info.git_blob_sha1:
        part.unlink()
        raise Sam2rtError(f"the download of {name} from {url or info.url} is not the published checkpoint (its git "
                          f"object id differs from {info.git_blob_sha1}); it was deleted: try again, or fetch the file "
                          "from the model's repository and pass --checkpoint PATH")
    _write_record(target, part)
    os.replace(part, target)
    return target


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file's content (SHA-1 of ``blob <size>\\0`` + content): how a checkpoint committed
    to a git repository (EdgeTAM's) is identified there."""
    import hashlib

    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _record_path(target: Path) -> Path:
    return target.with_name(target.name + ".json")


def _write_record(target: Path, part: Path) -> None:
    """What was downloaded: size and SHA-256 (the stat key lets a later check skip re-hashing)."""
    record = {"size": part.stat().st_size, "sha256": sha256_file(part)}
    _record_path(target).write_text(json.dumps(record) + "\n")


def cached_checkpoint_problem(target: Path) -> str | None:
    """Why a cached checkpoint cannot be used, or None.

    A file this cache downloaded has a record (``NAME.pt.json``): its size and SHA-256 must match. A file put
    there by hand must at least be a complete zip archive (the format of ``torch.save``; its directory sits
    at the end, so a truncated file fails).
    """
    size = target.stat().st_size
    if size == 0:
        return "0 bytes"
    try:
        record = json.loads(_record_path(target).read_text())
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict):
        return None if zipfile.is_zipfile(target) else f"{size} bytes, not a complete PyTorch checkpoint"
    if record.get("size") != size:
        return f"{size} bytes, {record.get('size')} were downloaded"
    if record.get("sha256") != sha256_file(target):
        return "its SHA-256 differs from the downloaded file's"
    return None
