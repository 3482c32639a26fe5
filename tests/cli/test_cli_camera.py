"""``sam2rt camera`` on a synthetic video file (no display here: the overlay goes to a video file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sam2rt.cli import main

W, H, N = 160, 120, 8


@pytest.fixture(scope="module")
def square_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 frames of a red square moving right on a dark-grey background, MPEG-4."""
    import cv2

    path = tmp_path_factory.mktemp("camera") / "square.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (W, H))
    assert writer.isOpened()
    for i in range(N):
        frame = np.full((H, W, 3), 40, np.uint8)
        x = 20 + 8 * i
        frame[40:80, x:x + 40] = (0, 0, 230)  # BGR red
        writer.write(frame)
    writer.release()
    return path


def frame_count(path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    return count


def test_file_source_writes_overlay(exported_tiny_256, square_mp4, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    out = tmp_path / "overlay.mp4"
    rc = main(["camera", "--model", str(exported_tiny_256), "--source", str(square_mp4), "--out", str(out),
               "--point", "40,60", "--point", "5,5,0", "--box", "15,35,65,85"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert out.is_file() and frame_count(out) == N
    assert f"tracked {N} frames" in printed and "FPS" in printed


def test_default_prompt_default_out_and_max_frames(exported_tiny_256, square_mp4, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.chdir(tmp_path)
    rc = main(["camera", "--model", str(exported_tiny_256), "--source", str(square_mp4), "--max-frames", "3"])
    assert rc == 0
    assert frame_count(tmp_path / "camera_out.mp4") == 3
    assert "tracked 3 frames" in capsys.readouterr().out


@pytest.mark.parametrize("source", ["missing.mp4", "not_a_video.mp4"])
def test_source_that_cannot_be_opened(exported_tiny_256, tmp_path, monkeypatch, capsys, source):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "not_a_video.mp4").write_text("this is not a video")
    rc = main(["camera", "--model", str(exported_tiny_256), "--source", source])
    err = capsys.readouterr().err
    assert rc == 2
    assert "sam2rt: error:" in err and source in err
    assert not (tmp_path / "camera_out.mp4").exists()


def test_prompt_outside_the_frame(exported_tiny_256, square_mp4, tmp_path, capsys):
    rc = main(["camera", "--model", str(exported_tiny_256), "--source", str(square_mp4),
               "--out", str(tmp_path / "o.mp4"), "--point", f"{W + 10},10"])
    assert rc == 2
    assert "outside" in capsys.readouterr().err


def test_bad_point_syntax_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["camera", "--model", "m", "--source", "0", "--point", "1,2,5"])
    assert exc.value.code == 2
    assert "LABEL" in capsys.readouterr().err


class FakeCapture:
    """A live source that delivers 2 frames, drops, comes back for 1 frame, then stays down."""

    frames_per_opening = (2, 1)
    openings = 0

    def __init__(self, source) -> None:
        self.left = self.frames_per_opening[FakeCapture.openings] if FakeCapture.openings < 2 else 0
        FakeCapture.openings += 1

    def isOpened(self) -> bool:
        return True

    def read(self):
        if self.left == 0:
            return False, None
        self.left -= 1
        return True, np.zeros((H, W, 3), np.uint8)

    def release(self) -> None:
        pass


def test_live_source_reconnects_then_gives_up(monkeypatch, capsys):
    import cv2

    from sam2rt.cli import camera as cli_stream

    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture)
    monkeypatch.setattr(cli_stream, "RECONNECT_DELAY_S", 0.0)
    FakeCapture.openings = 0
    reader = cli_stream.FrameReader("rtsp://camera.local/stream", reconnect=2)
    got = 0
    while reader.read() is not None:
        got += 1
    assert got == 3 and FakeCapture.openings == 4  # first opening, one successful and two failed reopens
    err = capsys.readouterr().err
    assert "reconnecting (1/2)" in err and "reconnecting (2/2)" in err


def test_file_source_ends_without_reconnecting(square_mp4, capsys):
    from sam2rt.cli.camera import FrameReader

    reader = FrameReader(str(square_mp4), reconnect=3)
    got = 0
    while reader.read() is not None:
        got += 1
    reader.close()
    assert got == N and "reconnecting" not in capsys.readouterr().err
