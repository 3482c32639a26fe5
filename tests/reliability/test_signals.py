"""Issue 12 (14): SIGTERM mid-run cleans up like SIGINT: no hidden temporary folders beside the outputs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _frames(folder: Path, count: int) -> Path:
    folder.mkdir()
    for i in range(count):
        arr = np.full((48, 64, 3), 30, np.uint8)
        arr[10:30, 10 + i % 30:30 + i % 30] = 220
        Image.fromarray(arr).save(folder / f"{i:05d}.jpg")
    return folder


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 130)])
def test_sigterm_mid_run_leaves_nothing_behind(signum: int, code: int, exported_tiny_256: Path,
                                               tmp_path: Path) -> None:
    video = _frames(tmp_path / "frames", 400)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "sam2rt", "track", "--model", str(exported_tiny_256),
                             "--video", str(video), "--point", "20,20", "--out", str(out_dir / "o.mp4"),
                             "--masks-dir", str(out_dir / "masks")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out_dir.glob(".sam2rt-masks-*/masks/1/00002.png")):  # mid-run: masks being written
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it was signalled"
            time.sleep(0.05)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert f"terminated by {signal.Signals(signum).name}" in err or signum == signal.SIGINT
    assert "Traceback" not in err
    assert list(out_dir.iterdir()) == []  # no hidden .sam2rt-* folder, no partial output
