"""Output paths checked before the work starts: a long run must not fail at its last step on a bad path.

Every command that writes (track, camera, bench, download, convert) calls these first. The checks create
nothing that stays: writability is proven by creating and deleting one temporary file in the nearest folder
that exists, which is the only test that also catches read-only mounts, special filesystems (``/proc``)
and permission rules that ``os.access`` does not see (root, ACLs).
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from sam2rt.errors import Sam2rtError


def nearest_existing(path: Path) -> Path:
    """``path`` itself or its closest ancestor that exists (following symlinks)."""
    path = Path(os.path.abspath(path))
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor)


def _probe(folder: Path, flag: str, shown: Path) -> None:
    """Create and delete a temporary file in ``folder``, or raise naming ``flag`` and ``shown``."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".sam2rt-write-test-")
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise Sam2rtError(f"{flag} {shown}: cannot write in {folder} ({reason}); choose a path in a writable "
                          "folder on a regular filesystem") from None
    os.close(fd)
    os.unlink(name)


NAME_MAX = 255  # bytes per path component on Linux, macOS and Windows filesystems


def check_name_lengths(path: Path, flag: str) -> None:
    """Every component of ``path`` fits a filesystem name (255 bytes), or a Sam2rtError names the long one."""
    for part in Path(path).parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            raise Sam2rtError(f"{flag}: the name {part[:40]}... is {size} bytes long; file and folder names may have "
                              f"at most {NAME_MAX} bytes. Choose a shorter name")


def _check_folder(folder: Path, flag: str, shown: Path) -> None:
    """``folder`` is, or can be created as, a writable folder; messages name ``flag`` and ``shown``."""
    check_name_lengths(shown, flag)
    existing = nearest_existing(folder)
    if not existing.is_dir():
        raise Sam2rtError(f"{flag} {shown}: {existing} is a file, not a folder; choose a path in a folder")
    _probe(existing, flag, shown)


def check_writable_dir(path: Path, flag: str) -> None:
    """``path`` can be created (with its missing parents) or already is a writable folder."""
    _check_folder(Path(path), flag, Path(path))


def check_writable_file(path: Path, flag: str) -> None:
    """A file can be written at ``path``: not a folder, and its (possibly missing) folder is writable."""
    path = Path(path)
    check_name_lengths(path, flag)
    if path.is_dir():
        raise Sam2rtError(f"{flag} {path} is a folder; pass a file name inside it")
    _check_folder(path.parent, flag, path)


def replace(src: Path, dst: Path, flag: str) -> None:
    """``os.replace`` whose failure is a Sam2rtError naming the output (the source stays where it was)."""
    try:
        os.replace(src, dst)
    except OSError as e:
        raise Sam2rtError(f"{flag} {dst}: cannot move the result into place ({e.strerror}); check that the "
                          "path is writable and not an existing folder") from None


def make_parents(path: Path) -> list[Path]:
    """Create ``path``'s missing parent folders; returns those created, outermost first."""
    missing = [p for p in reversed(path.absolute().parents) if not p.exists()]
    for p in missing:
        p.mkdir()
    return missing


def remove_empty(folders: Sequence[Path]) -> None:
    """Remove the folders ``make_parents`` created, innermost first, where they are still empty."""
    for p in reversed(folders):
        try:
            p.rmdir()
        except OSError:
            pass  # not empty (something else wrote there): leave it


@contextmanager
def removing_created(folder: Path) -> Iterator[None]:
    """Remove ``folder`` and its parents again, where this block created them and they are still empty,
    when the block fails or is interrupted (an interrupted export leaves no empty folders)."""
    missing = [p for p in (Path(os.path.abspath(folder)), *Path(os.path.abspath(folder)).parents) if not p.exists()]
    try:
        yield
    except BaseException:
        remove_empty(list(reversed(missing)))
        raise


def is_model_dir(folder: Path) -> bool:
    """``folder`` holds a model: a manifest or ONNX graphs."""
    folder = Path(folder)
    return folder.is_dir() and ((folder / "manifest.json").exists() or any(folder.glob("*.onnx")))


def check_model_out(out: Path, force: bool, source: Path | None = None) -> None:
    """``--out`` of export/convert/calibrate: never the source model; an existing model only with ``--force``."""
    out = Path(out)
    check_name_lengths(out, "--out")
    if source is not None and out.exists() and out.resolve() == Path(source).resolve():
        raise Sam2rtError(f"--out {out} is the source model folder; choose a new folder for the result")
    if is_model_dir(out) and not force:
        raise Sam2rtError(f"--out {out} already holds a model (manifest.json or .onnx graphs), which this would "
                          "replace; choose a new folder, or pass --force to replace it")


def check_video_frames(path: Path, frames: int) -> None:
    """Reopen the written video and count its frames: VideoWriter reports no write error (a full disk
    gives a truncated file and no exception), so this is the only proof the file is whole."""
    import cv2  # here: the module stays importable without OpenCV loaded

    capture = cv2.VideoCapture(str(path))
    counted = 0
    try:
        while capture.isOpened() and capture.grab():
            counted += 1
    finally:
        capture.release()
    if counted != frames:
        raise Sam2rtError(f"the overlay video came out with {counted} of {frames} frames (disk full or a write "
                          "error); nothing was replaced. Free some disk space and run again")
