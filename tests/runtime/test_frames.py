"""sam2rt.runtime.frames: JPEG folders, video files and arrays, read as the official predictor reads them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from sam2rt.errors import Sam2rtError
from sam2rt.runtime.frames import FrameSource, extract_jpeg_folder, open_frames

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FRAMES = DATA / "videos" / "bedroom_frames"
VIDEO = DATA / "videos" / "bedroom.mp4"
needs_frames = pytest.mark.skipif(not FRAMES.is_dir(), reason=f"test data not found at {FRAMES}")
needs_video = pytest.mark.skipif(not VIDEO.is_file(), reason=f"test data not found at {VIDEO}")


def _write_jpegs(folder: Path, names: list[str], size: tuple[int, int] = (24, 16)) -> None:
    """One solid-color JPEG per name; the red channel encodes the position in `names` (x 20)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.new("RGB", size, (20 * i, 100, 200)).save(folder / name, quality=95)


def _cv2_frames(path: Path, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = [cv2.cvtColor(capture.read()[1], cv2.COLOR_BGR2RGB) for _ in range(count)]
    capture.release()
    return frames


# --- JPEG folders --------------------------------------------------------------------------------


@needs_frames
def test_jpeg_folder_decodes_like_pillow() -> None:
    frames = open_frames(FRAMES)
    assert (len(frames), frames.height, frames.width, frames.name) == (40, 540, 960, "bedroom_frames")
    for index in (0, 1, 39):
        expected = np.array(Image.open(FRAMES / f"{index:05d}.jpg").convert("RGB"))
        frame = frames[index]
        assert frame.dtype == np.uint8 and not frame.flags.writeable
        np.testing.assert_array_equal(frame, expected)
    assert frames[np.int64(39)] is frames[39]  # served from the cache


def test_jpeg_folder_sorts_by_integer_and_iterates(tmp_path: Path) -> None:
    _write_jpegs(tmp_path, ["1.jpg", "2.jpeg", "10.JPG", "0003.jpg"])
    (tmp_path / "notes.txt").write_text("ignored")
    frames = open_frames(str(tmp_path), cache_size=2)
    reds = [int(frame[0, 0, 0]) for frame in frames]
    # positions in the write order: 1 -> 0, 2 -> 20, 0003 -> 60, 10 -> 40
    assert [round(r / 20) for r in reds] == [0, 1, 3, 2]
    assert (frames.height, frames.width) == (16, 24)
    assert "4 frames" in repr(frames)


def test_jpeg_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(Sam2rtError, match="does not exist"):
        open_frames(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(Sam2rtError, match="No JPEG frames.*extract_jpeg_folder"):
        open_frames(tmp_path / "empty")
    _write_jpegs(tmp_path / "named", ["0.jpg", "frame_1.jpg"])
    with pytest.raises(Sam2rtError, match="<frame index>.jpg"):
        open_frames(tmp_path / "named")
    _write_jpegs(tmp_path / "sizes", ["0.jpg"])
    _write_jpegs(tmp_path / "sizes" / "tmp", ["1.jpg"], size=(8, 8))
    (tmp_path / "sizes" / "tmp" / "1.jpg").rename(tmp_path / "sizes" / "1.jpg")
    frames = open_frames(tmp_path / "sizes")
    with pytest.raises(Sam2rtError, match="same size"):
        frames[1]
    (tmp_path / "sizes" / "0.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(Sam2rtError, match="Cannot decode"):
        open_frames(tmp_path / "sizes")


def test_index_errors(tmp_path: Path) -> None:
    _write_jpegs(tmp_path, ["0.jpg", "1.jpg"])
    frames = open_frames(tmp_path)
    for bad in (2, -1):
        with pytest.raises(Sam2rtError, match="out of range.*0..1"):
            frames[bad]
    for bad in ("0", 1.0, slice(0, 1), True):
        with pytest.raises(Sam2rtError, match="integers"):
            frames[bad]


# --- video files ---------------------------------------------------------------------------------


@needs_video
def test_video_file_matches_sequential_opencv() -> None:
    expected = _cv2_frames(VIDEO, 6)
    frames = open_frames(VIDEO)
    assert (len(frames), frames.height, frames.width, frames.name) == (200, 540, 960, "bedroom.mp4")
    for index in (0, 1, 2, 5):  # sequential, then a short forward skip
        np.testing.assert_array_equal(frames[index], expected[index])
    frames._cache.clear()
    np.testing.assert_array_equal(frames[3], expected[3])  # backward: seeks
    frames.close()


@needs_video
@needs_frames
def test_video_frames_are_close_to_the_jpeg_folder() -> None:
    # the JPEG folder was made from this video: the same pictures up to JPEG loss
    video, jpegs = open_frames(VIDEO), open_frames(FRAMES)
    diff = np.abs(video[0].astype(np.int16) - jpegs[0].astype(np.int16))
    print(f"bedroom.mp4 frame 0 vs 00000.jpg: mean abs diff {diff.mean():.2f} levels, max {diff.max()}")
    assert diff.mean() < 4.0


def _write_video(path: Path, count: int) -> None:
    """A tiny MJPG video whose frame i is gray level 30 * i."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(count):
        writer.write(np.full((24, 32, 3), 30 * i, np.uint8))
    writer.release()


class _LyingCapture:
    """Wraps a cv2.VideoCapture and reports a wrong frame count, like a broken container header.

    (Composition, not a subclass: garbage-collecting a Python subclass of cv2.VideoCapture crashed.)
    """

    _real_capture = cv2.VideoCapture

    def __init__(self, path: str, claimed: int) -> None:
        self._capture = self._real_capture(path)
        self._claimed = claimed

    def get(self, prop: int) -> float:
        return float(self._claimed) if prop == cv2.CAP_PROP_FRAME_COUNT else self._capture.get(prop)

    def __getattr__(self, name: str) -> object:
        return getattr(self._capture, name)


@pytest.mark.parametrize("claimed", [None, 3, 50, 0])
def test_video_frame_count_is_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, claimed: int) -> None:
    path = tmp_path / "gray.avi"
    _write_video(path, 7)
    if claimed is not None:
        monkeypatch.setattr(cv2, "VideoCapture", lambda p: _LyingCapture(p, claimed))
    frames = open_frames(path)
    assert len(frames) == 7
    levels = [int(frames[i][0, 0].mean()) for i in (6, 0, 3, 4, 1)]  # random access, both directions
    assert [round(level / 30) for level in levels] == [6, 0, 3, 4, 1]
    assert [round(int(f[0, 0].mean()) / 30) for f in frames] == list(range(7))


def test_unreadable_video(tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(Sam2rtError, match="OpenCV cannot read.*extract"):
        open_frames(bad)


@needs_video
def test_extract_jpeg_folder(tmp_path: Path) -> None:
    out = extract_jpeg_folder(VIDEO, tmp_path / "jpegs", max_frames=3)
    assert sorted(p.name for p in out.iterdir()) == ["00000.jpg", "00001.jpg", "00002.jpg"]
    frames, expected = open_frames(out), _cv2_frames(VIDEO, 3)
    for index in range(3):
        diff = np.abs(frames[index].astype(np.int16) - expected[index].astype(np.int16))
        assert diff.mean() < 2.0  # quality 95 JPEG
    with pytest.raises(Sam2rtError, match="already holds JPEG"):
        extract_jpeg_folder(VIDEO, out)
    with pytest.raises(Sam2rtError, match="max_frames"):
        extract_jpeg_folder(VIDEO, tmp_path / "other", max_frames=0)
    with pytest.raises(Sam2rtError, match="not a video file"):
        extract_jpeg_folder(tmp_path / "jpegs", tmp_path / "other")


# --- arrays --------------------------------------------------------------------------------------


def test_array_list_and_stack() -> None:
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 256, (3, 10, 12, 3), dtype=np.uint8)
    for source in (list(stack), stack):
        frames = open_frames(source)
        assert (len(frames), frames.height, frames.width) == (3, 10, 12)
        np.testing.assert_array_equal(frames[2], stack[2])
        assert not frames[2].flags.writeable
    assert stack.flags.writeable  # the caller's array is not frozen
    assert open_frames(frames) is frames and isinstance(frames, FrameSource)


@pytest.mark.parametrize(
    "source,match",
    [
        ([], "empty"),
        ([np.zeros((4, 4, 3), np.float32)], "uint8"),
        ([np.zeros((4, 4), np.uint8)], "uint8"),
        ([np.zeros((4, 4, 4), np.uint8)], "uint8"),
        ([[[0, 0, 0]]], "uint8"),
        (np.zeros((4, 4, 3), np.uint8), "wrap it in a list"),
        (42, "Cannot read frames from a int"),
    ],
)
def test_array_errors(source: object, match: str) -> None:
    with pytest.raises(Sam2rtError, match=match):
        open_frames(source)


def test_array_size_mismatch() -> None:
    frames = open_frames([np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3), np.uint8)])
    with pytest.raises(Sam2rtError, match="same size"):
        frames[1]
