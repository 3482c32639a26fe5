"""Issue 12, outputs: disk full (1), unwritable outputs (8), --masks-dir symlink / equal to --out (9),
1x1 frames (15), ``convert --graphs bogus`` (16). Every failure: exit 2, one line, nothing left behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from sam2rt.cli import main


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def _one_error_line(err: str) -> str:
    """The one ``sam2rt: error:`` line, last on stderr (progress bars may come before it); no traceback."""
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("sam2rt: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in err, err
    return errors[0]


def _frame_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --------------------------------------------------------------------------- 1: disk full


class _FullDiskWriter:
    """A VideoWriter on a disk that fills up after 2 frames: later writes are lost, no error is raised
    (what OpenCV does on ENOSPC)."""

    def __init__(self, *args: Any) -> None:
        self._real = _REAL_WRITER(*args)
        self._written = 0

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return self._real.isOpened()

    def write(self, frame: np.ndarray) -> None:
        if self._written < 2:
            self._real.write(frame)
        self._written += 1

    def release(self) -> None:
        self._real.release()


_REAL_WRITER = cv2.VideoWriter


def test_disk_full_overlay_keeps_the_earlier_file(exported_tiny_256: Path, frames: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "overlay.mp4"
    out.parent.mkdir()
    argv = ["track", "--model", str(exported_tiny_256), "--video", str(frames), "--point", "30,20",
            "--out", str(out), "--masks-dir", str(tmp_path / "out" / "masks")]
    out.write_bytes(b"the user's earlier good video")
    monkeypatch.setattr(cv2, "VideoWriter", _FullDiskWriter)
    code, err = _run(argv, capsys)
    assert code == 2 and "2 of 4 frames" in _one_error_line(err)
    assert out.read_bytes() == b"the user's earlier good video"
    assert _listing(out.parent) == ["overlay.mp4"]  # no masks, no hidden temporary folder
    monkeypatch.setattr(cv2, "VideoWriter", _REAL_WRITER)  # the same run on a healthy disk replaces it
    code, err = _run(argv, capsys)
    assert code == 0, err
    assert _frame_count(out) == 4


# --------------------------------------------------------------------------- 8: unwritable outputs


@pytest.fixture()
def small_video(tmp_path: Path) -> Path:
    path = tmp_path / "in.mp4"
    writer = _REAL_WRITER(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    return path


def _unwritable(kind: str, tmp_path: Path, readonly: Path) -> Path:
    """A folder path nothing can be written into: read-only, below a file, or on /proc."""
    if kind == "readonly":
        return readonly / "sub"
    if kind == "parent_is_file":
        (tmp_path / "a_file").write_text("x")
        return tmp_path / "a_file" / "sub"
    return Path("/proc/sam2rt-test")


KINDS = ["readonly", "parent_is_file", "proc"]


@pytest.mark.parametrize("kind", KINDS)
def test_unwritable_outputs_are_refused_before_the_work(kind: str, tmp_path: Path, readonly_dir: Path,
                                                        small_video: Path, frames: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    bad = _unwritable(kind, tmp_path, readonly_dir)
    missing_model = str(tmp_path / "no_model")  # an output check after the model load would name the model
    cases = {
        "track --out": ["track", "--model", missing_model, "--video", str(frames), "--point", "1,1",
                        "--out", str(bad / "o.mp4")],
        "track --masks-dir": ["track", "--model", missing_model, "--video", str(frames), "--point", "1,1",
                              "--out", str(tmp_path / "o.mp4"), "--masks-dir", str(bad / "masks")],
        "camera --out": ["camera", "--model", missing_model, "--source", str(small_video), "--out", str(bad / "o.mp4")],
        "bench --json": ["bench", "--model", missing_model, "--video", str(frames), "--json", str(bad / "r.json")],
        "download --cache-dir": ["download", "sam2.1_hiera_tiny", "--cache-dir", str(bad / "cache")],
    }
    before = _listing(tmp_path)
    for name, argv in cases.items():
        code, err = _run(argv, capsys)
        line = _one_error_line(err)
        assert code == 2 and "no_model" not in line and ("cannot write" in line or "is a file" in line), (name, line)
    assert _listing(tmp_path) == before


# --------------------------------------------------------------------------- 9: --masks-dir


def test_masks_dir_symlink_to_an_empty_folder(exported_tiny_256: Path, frames: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "real_masks"
    target.mkdir()
    link = tmp_path / "masks_link"
    link.symlink_to(target, target_is_directory=True)
    code, err = _run(["track", "--model", str(exported_tiny_256), "--video", str(frames), "--point", "30,20",
                      "--out", str(tmp_path / "o.mp4"), "--masks-dir", str(link)], capsys)
    assert code == 0, err
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert sorted(p.name for p in (target / "1").iterdir()) == [f"{i:05d}.png" for i in range(4)]


@pytest.mark.parametrize("masks", ["o.mp4", "."])
def test_masks_dir_equal_to_out_is_refused(masks: str, tmp_path: Path, frames: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.mp4"
    masks_dir = out if masks == "o.mp4" else tmp_path / "m"
    if masks == ".":
        out = masks_dir / "o.mp4"  # the overlay inside the masks folder
    before = _listing(tmp_path)
    code, err = _run(["track", "--model", str(tmp_path / "no_model"), "--video", str(frames), "--point", "1,1",
                      "--out", str(out), "--masks-dir", str(masks_dir)], capsys)
    assert code == 2 and "would hold --out" in _one_error_line(err)
    assert _listing(tmp_path) == before


# --------------------------------------------------------------------------- 15: 1x1 frames


def test_one_pixel_frames_error_names_the_cause(exported_tiny_256: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "tiny"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(folder / f"{i:05d}.jpg")
    code, err = _run(["track", "--model", str(exported_tiny_256), "--video", str(folder), "--point", "0,0",
                      "--out", str(tmp_path / "o.mp4")], capsys)
    line = _one_error_line(err)
    assert code == 2 and "1x1 pixels" in line and ".sam2rt-" not in line
    assert _listing(tmp_path) == ["tiny", "tiny/00000.jpg", "tiny/00001.jpg"]


# --------------------------------------------------------------------------- 16: convert --graphs bogus


def test_convert_graphs_bogus_leaves_no_folder(exported_tiny_256: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxconverter_common")
    out = tmp_path / "new" / "fp16"
    code, err = _run(["convert", str(exported_tiny_256), "--precision", "fp16", "--out", str(out),
                      "--graphs", "bogus"], capsys)
    assert code == 2 and "bogus" in _one_error_line(err)
    assert not (tmp_path / "new").exists()
