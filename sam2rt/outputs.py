"""Output paths checked before the work starts: a long run must not fail at its last step on a bad path.

Every command that writes (track, camera, bench, download, convert) calls these first. The checks create
nothing that stays: writability is proven by creating and deleting one temporary file in the nearest folder
that exists, which is the only test that also catches read-only mounts, special filesystems (``/proc``)
and permission rules that ``os.access`` does not see (root, ACLs).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

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


def _check_folder(folder: Path, flag: str, shown: Path) -> None:
    """``folder`` is, or can be created as, a writable folder; messages name ``flag`` and ``shown``."""
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
