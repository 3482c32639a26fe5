"""Calibration frames: short consecutive clips sampled evenly across several videos, JPEG folders and images.

INT8 ranges are only as good as the frames they are measured on, and memory attention and the memory
encoder only see realistic inputs when the tracker runs over consecutive frames (the bank fills up). So
calibration data is a list of *clips*: up to ``clip_len`` consecutive frames each, spread evenly over
every source, taken round-robin across sources until ``frames`` frames are planned. The plan depends only
on the sources and the settings, never on chance, so it (and the captured cache keyed by it) is stable.

Sources: a video file (OpenCV), a folder of ``<index>.jpg`` frames (one video), an image file (one
single-frame clip), or a folder of such files (each one a source, in sorted order).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from sam2rt.errors import Sam2rtError
from sam2rt.runtime.frames import JPEG_EXTENSIONS, open_frames

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_HINT = "pass video files, folders of <index>.jpg frames, image files, or folders holding them"


@dataclass(frozen=True)
class Source:
    """One calibration source: ``kind`` is "video" (file), "frames" (JPEG folder) or "image"; ``length`` frames."""

    path: Path
    kind: str
    length: int


@dataclass(frozen=True)
class Clip:
    """Frames ``start .. start + length - 1`` of ``source``, tracked as one short video."""

    source: Source
    start: int
    length: int

    @property
    def indices(self) -> range:
        return range(self.start, self.start + self.length)

    def key(self) -> dict[str, object]:
        """What identifies the clip's pixels in a cache key: path, size, modification time, range."""
        stat = self.source.path.stat()
        return {"path": str(self.source.path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "start": self.start, "length": self.length}


def _is_jpeg_folder(folder: Path) -> bool:
    jpegs = [p for p in folder.iterdir() if p.suffix in JPEG_EXTENSIONS]
    return bool(jpegs) and all(p.stem.isdigit() for p in jpegs)


def find_sources(paths: Sequence[str | os.PathLike]) -> list[Source]:
    """Expand the ``--data`` paths into sources (folders recursively, in sorted order).

    Raises Sam2rtError for a path that does not exist; unreadable videos raise from OpenCV's reader.
    """
    sources: list[Source] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise Sam2rtError(f"calibration data {path} does not exist; {_HINT}")
        sources.extend(_expand(path))
    return sources


def _expand(path: Path) -> Iterable[Source]:
    if path.is_dir():
        if _is_jpeg_folder(path):
            yield Source(path, "frames", len(open_frames(path)))
            return
        for child in sorted(path.iterdir()):
            if not child.name.startswith("."):
                yield from _expand(child)
    elif path.suffix.lower() in VIDEO_SUFFIXES:
        frames = open_frames(path)
        yield Source(path, "video", len(frames))
        frames.close()
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        yield Source(path, "image", 1)


def plan_clips(sources: Sequence[Source], frames: int, clip_len: int = 4) -> list[Clip]:
    """Deterministic, diverse clips totalling at most ``frames`` frames.

    Clips are handed out round-robin (one per source per round) so every source is used before any gets a
    second clip; a source's clips are spread evenly over its length (the centres of equal segments). An
    image is one single-frame clip. The returned order is round-robin too, so a shorter budget keeps the
    variety. Raises Sam2rtError when nothing can be sampled.
    """
    if type(frames) is not int or frames < 1:
        raise Sam2rtError(f"--frames must be a positive number of calibration frames, got {frames!r}")
    if type(clip_len) is not int or clip_len < 1:
        raise Sam2rtError(f"clip length must be a positive number of frames, got {clip_len!r}")
    usable = [s for s in sources if s.length > 0]
    if not usable:
        raise Sam2rtError(f"the calibration data yields no frames; {_HINT}")
    capacity = [max(1, s.length // clip_len) for s in usable]  # clips that fit without overlapping
    counts = [0] * len(usable)
    lengths: list[list[int]] = [[] for _ in usable]
    budget = frames
    while budget > 0 and any(c < cap for c, cap in zip(counts, capacity)):
        for i, source in enumerate(usable):
            if budget == 0 or counts[i] >= capacity[i]:
                continue
            n = min(clip_len, source.length, budget)
            counts[i] += 1
            lengths[i].append(n)
            budget -= n
    per_source = [_spread(s, ls) for s, ls in zip(usable, lengths)]
    rounds = max(len(p) for p in per_source)
    return [p[r] for r in range(rounds) for p in per_source if r < len(p)]


def _spread(source: Source, lengths: list[int]) -> list[Clip]:
    """Clips of the given lengths centred in ``len(lengths)`` equal segments of the source."""
    k = len(lengths)
    clips = []
    for i, n in enumerate(lengths):
        centre = (i + 0.5) * source.length / k
        start = min(max(int(centre - n / 2), 0), source.length - n)
        clips.append(Clip(source, start, n))
    return clips


def read_clip(clip: Clip) -> list[np.ndarray]:
    """The clip's frames as (H, W, 3) uint8 RGB arrays."""
    if clip.source.kind == "image":
        try:
            with Image.open(clip.source.path) as image:
                return [np.array(image.convert("RGB"))]
        except OSError as e:
            raise Sam2rtError(f"cannot decode the image {clip.source.path} ({e}); replace or drop it") from None
    frames = open_frames(clip.source.path, cache_size=0)
    try:
        return [np.array(frames[i]) for i in clip.indices]
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()


def describe(clips: Sequence[Clip]) -> str:
    """One line per source: how many clips and frames it gave (for logs)."""
    summary: dict[Path, list[int]] = {}
    for c in clips:
        summary.setdefault(c.source.path, []).append(c.length)
    return "; ".join(f"{p.name}: {len(ls)} clips, {sum(ls)} frames" for p, ls in summary.items())
