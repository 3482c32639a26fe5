"""Temporary files beside the outputs, claimed outputs, and what a killed process left behind.

Commands that write (``track``, ``segment``, ``export``) stage their results in hidden files or folders
beside the outputs and rename them into place at the end. Their names carry the writer's process id
(``.sam2rt-track-<pid>-*``), so the next run in the same folder can remove those whose process is gone
(killed with SIGKILL, power loss) without touching a run still in progress. An output path is claimed
with an advisory lock for the whole run, so a second process writing the same ``--masks-dir`` or
``--out`` is refused at once instead of failing after minutes of work.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Sequence

from sam2rt.errors import Sam2rtError

KINDS = ("track", "masks", "mask", "export")  # the hidden names this module makes: .sam2rt-<kind>-<pid>-...
_STALE = re.compile(r"^\.sam2rt-(?:%s)-(\d+)-" % "|".join(KINDS))


def temp_prefix(kind: str) -> str:
    """The prefix of this process's temporary files of ``kind`` (one of KINDS)."""
    assert kind in KINDS, kind
    return f".sam2rt-{kind}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process (or not a pid we can ask about): leave its files
    return True


def clean_stale(folder: Path) -> list[Path]:
    """Remove the temporary files and folders in ``folder`` that processes no longer running left behind;
    returns what was removed. Files of live processes, and anything we cannot remove, stay."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _STALE.match(entry.name)
        if match is None or _alive(int(match.group(1))):
            continue
        try:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        except OSError:
            continue
        removed.append(entry)
    return removed


def _lock_path(path: Path) -> Path:
    key = hashlib.sha256(os.fsencode(os.path.abspath(path))).hexdigest()[:24]
    return Path(tempfile.gettempdir()) / "sam2rt-locks" / f"{key}.lock"


@contextlib.contextmanager
def claimed(paths: Sequence[tuple[Path, str]]) -> Iterator[None]:
    """Hold an advisory lock on each (path, flag) for the block; a path another sam2rt process holds is
    refused at once. Locks live in ``$TMPDIR/sam2rt-locks`` (one machine); where they cannot be made the run
    goes on unlocked."""
    with contextlib.ExitStack() as stack:
        for path, flag in paths:
            lock = _lock_path(path)
            try:
                lock.parent.mkdir(exist_ok=True)
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError:
                continue
            stack.callback(os.close, fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    continue
                raise Sam2rtError(f"{flag} {path} is being written by another sam2rt process; wait for it to "
                                  "finish or choose another path") from None
        yield


def write_all_or_nothing(targets: Sequence[Path], write: Callable[[Path, Path], None], flag: str) -> None:
    """Write every target through a temporary file beside it, then rename them all into place.

    ``write(target, tmp_path)`` writes one file. If any write or rename fails, the targets renamed so far
    get their earlier contents back (or are removed where there was none), so either every target is new
    or every pre-existing file is byte-identical to before.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for target in targets:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=temp_prefix("mask"), suffix=target.suffix)
            os.close(fd)
            staged.append((target, Path(tmp)))
            try:
                write(target, Path(tmp))
                os.chmod(tmp, _mode_for(target))
            except OSError as e:
                raise Sam2rtError(f"{flag} {target}: cannot write it ({e.strerror or e}); check the free disk "
                                  "space and permissions. Nothing was replaced") from None
        _commit(staged, flag)
    finally:
        for _, tmp in staged:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _mode_for(target: Path) -> int:
    """The permissions the target has, or a new file would get (mkstemp makes 0600)."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _commit(staged: Sequence[tuple[Path, Path]], flag: str) -> None:
    """Rename each staged file onto its target; undo the renames done so far if one fails."""
    backups: list[tuple[Path, Path | None]] = []
    current = staged[0][0] if staged else Path()
    try:
        for current, tmp in staged:
            backup = None
            if current.exists():
                backup = tmp.with_name(tmp.name + ".old")
                try:
                    os.link(current, backup)  # the earlier file stays reachable until every rename is done
                except OSError:
                    shutil.copy2(current, backup)  # a filesystem without hard links
            backups.append((current, backup))
            os.replace(tmp, current)
    except OSError as e:
        for target, backup in reversed(backups):
            with contextlib.suppress(OSError):
                os.replace(backup, target) if backup is not None else target.unlink()
        raise Sam2rtError(f"{flag} {current}: cannot move the result into place ({e.strerror or e}); the "
                          "earlier files are unchanged") from None
    finally:
        for _, backup in backups:
            if backup is not None:
                with contextlib.suppress(OSError):
                    backup.unlink()
