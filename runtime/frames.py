"""Lazy frame sources: a JPEG folder, a video file or a list of arrays, all read as (H, W, 3) uint8 RGB.

`open_frames(source)` picks the source. Frames are decoded on access (a few recent ones are kept), so a
long video costs no memory up front. A JPEG folder is decoded with Pillow, like the official predictor;
a video file with OpenCV (the official predictor cannot read one without decord: see
`extract_jpeg_folder`).
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Union

import cv2
import numpy as np

from sam2rt.errors import Sam2rtError
from sam2rt.runtime.image_files import (EXTRACT_HINT, IMAGE_FILE_SUFFIXES, JPEG_EXTENSIONS, decode_error,
                                        open_image, read_image, sorted_jpegs)  # noqa: F401 (re-exported)

FrameInput = Union[str, os.PathLike, Sequence[np.ndarray], np.ndarray, "FrameSource"]



class FrameSource:
    """A sequence of frames of one size, decoded on access.

    Subclasses set `name`, `height`, `width` and implement `__len__` and `_read(i)`. Returned frames are
    read-only (H, W, 3) uint8 RGB arrays: they may be shared with the cache.
    """

    name: str
    height: int
    width: int

    def __init__(self, cache_size: int = 4) -> None:
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    def __len__(self) -> int:
        raise NotImplementedError

    def _read(self, index: int) -> np.ndarray:
        """Decode frame `index` (already range-checked) as (H, W, 3) uint8 RGB."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> np.ndarray:
        """Frame `index` (0 <= index < len) as a read-only (H, W, 3) uint8 RGB array."""
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise Sam2rtError(f"Frame indices are integers, got {index!r}.")
        index = int(index)
        if not 0 <= index < len(self):
            raise Sam2rtError(
                f"Frame index {index} is out of range: {self.name} has {len(self)} frames "
                f"(valid indices 0..{len(self) - 1})."
            )
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        frame = self._read(index)
        if frame.shape != (self.height, self.width, 3):
            raise Sam2rtError(
                f"Frame {index} of {self.name} is {frame.shape[1]}x{frame.shape[0]}, but the first frame is "
                f"{self.width}x{self.height}; all frames of a video must have the same size."
            )
        frame.flags.writeable = False
        self._cache[index] = frame
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return frame

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(len(self)):
            yield self[index]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self)} frames, {self.width}x{self.height})"


class JpegFolderFrames(FrameSource):
    """Frames from a folder of `<int>.jpg` files, ordered by the integer like the official loader."""

    def __init__(self, folder: Path, cache_size: int = 4) -> None:
        super().__init__(cache_size)
        self.name = folder.name
        self.paths = sorted_jpegs(folder)
        with open_image(self.paths[0]) as image:  # reads the header only
            self.width, self.height = image.size

    def __len__(self) -> int:
        return len(self.paths)

    def _read(self, index: int) -> np.ndarray:
        path = self.paths[index]
        with open_image(path) as image:
            try:
                return np.array(image.convert("RGB"))  # the official predictor's decoding
            except OSError as error:
                raise decode_error(path, error) from error


class VideoFileFrames(FrameSource):
    """Frames of a video file, decoded with OpenCV.

    Sequential and short forward reads decode on; other reads seek with CAP_PROP_POS_FRAMES (accurate
    but slow on long GOPs, ~0.2-0.5 s per seek on the bundled mp4 files).
    """

    max_skip = 32  # forward gaps up to this many frames are decoded (grab) instead of seeking

    def __init__(self, path: Path, cache_size: int = 4) -> None:
        super().__init__(cache_size)
        self.name = path.name
        self.path = path
        self._capture = cv2.VideoCapture(str(path))
        ok, first = self._capture.read() if self._capture.isOpened() else (False, None)
        if not ok:
            raise Sam2rtError(f"OpenCV cannot read the video {path}; check the file, or {EXTRACT_HINT}.")
        self.height, self.width = first.shape[:2]
        self._next = 1  # index of the frame the next read() returns
        self._len = self._count_frames()
        first = cv2.cvtColor(first, cv2.COLOR_BGR2RGB)
        first.flags.writeable = False
        self._cache[0] = first

    def __len__(self) -> int:
        return self._len

    def _count_frames(self) -> int:
        """The container's frame count, verified by reading its last frame; counted by decoding if wrong
        (with a warning naming the first frame that fails). Counted on a second decoder, so the main one
        stays at frame 1 (seeking back to 0 fails on some one-frame files)."""
        claimed = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        probe = cv2.VideoCapture(str(self.path))
        try:
            if claimed >= 1:
                probe.set(cv2.CAP_PROP_POS_FRAMES, claimed - 1)
                if probe.grab() and not probe.grab():
                    return claimed
                probe.release()
                probe = cv2.VideoCapture(str(self.path))
            count = 0
            while probe.grab():
                count += 1
        finally:
            probe.release()
        count = max(count, 1)  # the first frame was decoded in __init__
        if claimed > count:
            warnings.warn(f"{self.path}: the container says {claimed} frames but only {count} decode (frame "
                          f"{count} fails); tracking frames 0..{count - 1}. Re-encode the video to use all of it, "
                          "e.g. `ffmpeg -i in.mp4 -c:v libx264 out.mp4`.", stacklevel=4)
        return count

    def _seek(self, index: int) -> None:
        self._capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        self._next = index

    def _read(self, index: int) -> np.ndarray:
        if not self._next <= index <= self._next + self.max_skip:
            self._seek(index)
        while self._next < index:
            self._capture.grab()
            self._next += 1
        ok, bgr = self._capture.read()
        if not ok:
            self._seek(index)  # the decoder state is unknown after a failure; seek next time
            raise Sam2rtError(f"Cannot decode frame {index} of {self.path}; {EXTRACT_HINT}.")
        self._next = index + 1
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        """Release the video file."""
        self._capture.release()


class ArrayFrames(FrameSource):
    """Frames already in memory: a sequence of (H, W, 3) uint8 arrays or one (T, H, W, 3) array."""

    def __init__(self, frames: Sequence[np.ndarray] | np.ndarray, name: str = "frames") -> None:
        super().__init__(cache_size=0)
        self.name = name
        self._frames = frames
        if len(frames) == 0:
            raise Sam2rtError("The frame list is empty; pass at least one (H, W, 3) uint8 frame.")
        for index, frame in enumerate(frames):
            _check_frame(frame, index)
        self.height, self.width = frames[0].shape[:2]

    def __len__(self) -> int:
        return len(self._frames)

    def _read(self, index: int) -> np.ndarray:
        return self._frames[index].view()  # a view, so marking it read-only leaves the caller's array alone


def _check_frame(frame: object, index: int) -> None:
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        got = f"{type(frame).__name__} {getattr(frame, 'shape', '')} {getattr(frame, 'dtype', '')}"
        raise Sam2rtError(
            f"Frame {index} must be an (H, W, 3) uint8 RGB numpy array, got {got}. "
            "Convert with np.asarray(image, dtype=np.uint8) (and cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) "
            "for OpenCV frames)."
        )
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise Sam2rtError(f"Frame {index} is empty (shape {frame.shape}); frames need at least 1x1 pixels.")


def open_frames(source: FrameInput, cache_size: int = 4) -> FrameSource:
    """Open frames from a JPEG folder, a video file, or a list of arrays.

    Args:
        source: a folder of `<int>.jpg` files, a video file path, a sequence of (H, W, 3) uint8 RGB arrays
            (or one (T, H, W, 3) array), or a FrameSource (returned as is).
        cache_size: how many decoded frames to keep.
    Returns:
        A FrameSource; `source[i]` is frame i as (H, W, 3) uint8 RGB.
    """
    if isinstance(source, FrameSource):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return JpegFolderFrames(path, cache_size)
        if path.is_file() and path.suffix.lower() in IMAGE_FILE_SUFFIXES:  # one image: a 1-frame video
            return ArrayFrames([read_image(path)], name=path.name)
        if path.is_file():
            return VideoFileFrames(path, cache_size)
        raise Sam2rtError(f"{path} does not exist; pass a JPEG frame folder or a video file.")
    if isinstance(source, np.ndarray) and source.ndim == 3:
        raise Sam2rtError("Got a single (H, W, 3) frame; wrap it in a list: open_frames([frame]).")
    if isinstance(source, (np.ndarray, Sequence)):
        return ArrayFrames(source)
    raise Sam2rtError(
        f"Cannot read frames from a {type(source).__name__}; pass a JPEG folder path, a video file path "
        "or a list of (H, W, 3) uint8 arrays."
    )


def extract_jpeg_folder(
    video_path: str | os.PathLike, out_dir: str | os.PathLike, max_frames: int | None = None
) -> Path:
    """Write a video's frames as 00000.jpg, 00001.jpg, ... (JPEG quality 95), the folder format the
    official predictor reads.

    Args:
        video_path: a video file OpenCV can decode.
        out_dir: the folder to create or fill; must hold no JPEG files yet.
        max_frames: stop after this many frames (None: all).
    Returns:
        out_dir as a Path.
    """
    if max_frames is not None and max_frames <= 0:
        raise Sam2rtError(f"max_frames must be a positive number of frames or None, got {max_frames}.")
    out = Path(out_dir)
    if out.is_dir() and any(p.suffix in JPEG_EXTENSIONS for p in out.iterdir()):
        raise Sam2rtError(f"{out} already holds JPEG files; choose an empty folder or delete them first.")
    if out.exists() and not out.is_dir():
        raise Sam2rtError(f"{out} is a file; pass a folder path for the JPEG frames.")
    if not Path(video_path).is_file():
        raise Sam2rtError(f"{video_path} is not a video file; pass the path of a video such as an .mp4.")
    source = VideoFileFrames(Path(video_path), cache_size=1)
    try:
        out.mkdir(parents=True, exist_ok=True)
        count = len(source) if max_frames is None else min(max_frames, len(source))
        for index in range(count):
            bgr = cv2.cvtColor(source[index], cv2.COLOR_RGB2BGR)
            if not cv2.imwrite(str(out / f"{index:05d}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise Sam2rtError(f"Cannot write JPEG files to {out}; check that the folder is writable.")
    finally:
        source.close()
    return out
