"""One local Ray instance (2 CPUs) for every test of this folder, and short clips cut from the shared data.

Ray takes seconds to start, so the instance is package-scoped; its teardown checks that no Ray process of
it is left. Clips are written into tmp (the shared data is never copied into the repository).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

CLIP_SIZE = (160, 96)  # (width, height): small frames keep decoding and mask writing cheap


def ray_processes(marker: str) -> list[int]:
    """Process ids whose command line mentions ``marker`` (the Ray instance's private temp folder)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and int(pid) != os.getpid():
            found.append(int(pid))
    return found


@pytest.fixture(scope="package")
def ray_local():
    """``ray`` initialised locally with 2 CPUs in the namespace the commands use; shut down (and checked
    gone) after the last test of the folder."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = pytest.importorskip("ray", reason='the Ray extra is not installed (pip install -e ".[ray]")')
    from sam2rt.cluster.session import NAMESPACE

    temp = tempfile.mkdtemp(prefix="sam2rt-ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    # a single node: no traffic leaves the machine (usage stats off above; no dashboard)
    ray.init(num_cpus=2, include_dashboard=False, namespace=NAMESPACE, log_to_driver=False, _temp_dir=temp)
    try:
        yield ray
    finally:
        ray.shutdown()
        deadline = time.monotonic() + 20.0
        while ray_processes(temp) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = ray_processes(temp)
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"Ray processes left behind after ray.shutdown(): {left}"


@pytest.fixture(scope="package")
def clip():
    """``clip(path, source, frames)`` writes a short clip (see :func:`write_clip`)."""
    return write_clip


def write_clip(path: Path, source: Path, frames: int, start: int = 0) -> Path:
    """``frames`` frames of ``source`` from ``start``, resized to CLIP_SIZE, as an mp4v file."""
    import cv2

    capture = cv2.VideoCapture(str(source))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, CLIP_SIZE)
    for i in range(start + frames):
        ok, frame = capture.read()
        assert ok, f"{source} has fewer than {start + frames} frames"
        if i >= start:
            writer.write(cv2.resize(frame, CLIP_SIZE, interpolation=cv2.INTER_AREA))
    writer.release()
    capture.release()
    return path
