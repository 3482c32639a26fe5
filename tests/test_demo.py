"""The demo's synthetic clip (fast: no model, no export)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam2rt.demo import DISC_COLOUR, Weights, _same_source, make_clip
from sam2rt.errors import Sam2rtError


def test_make_clip_writes_jpeg_frames_with_a_moving_disc(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip")
    names = sorted(p.name for p in clip.folder.iterdir())
    assert names == [f"{i:05d}.jpg" for i in range(48)]
    assert (clip.width, clip.height) == (640, 360) and len(clip.centres) == 48
    for i in (0, 17, 47):
        rgb = np.asarray(Image.open(clip.folder / f"{i:05d}.jpg").convert("RGB"))
        assert rgb.shape == (360, 640, 3)
        x, y = clip.centres[i]
        assert clip.radius < x < 640 - clip.radius and clip.radius < y < 360 - clip.radius  # fully inside
        centre = rgb[int(y), int(x)].astype(int)
        assert np.abs(centre - np.asarray(DISC_COLOUR)).max() < 40  # the disc (shaded, JPEG) is there
        truth = clip.disc_mask(i)
        assert abs(truth.sum() - math.pi * clip.radius ** 2) < 0.05 * math.pi * clip.radius ** 2
        outside = rgb[~truth].astype(int)
        orange = (np.abs(outside - np.asarray(DISC_COLOUR)) < 30).all(axis=1).mean()
        assert orange < 0.01  # nothing else in the frame looks like the disc
    steps = np.diff(np.asarray(clip.centres), axis=0)
    assert (np.hypot(steps[:, 0], steps[:, 1]) > 1).all()  # it moves on every frame
    assert clip.centres[0] == (320.0, 180.0)


def test_make_clip_is_deterministic_and_replaces_the_folder(tmp_path: Path) -> None:
    first = make_clip(tmp_path / "clip", num_frames=6)
    a = (first.folder / "00003.jpg").read_bytes()
    second = make_clip(tmp_path / "clip", num_frames=4)
    assert sorted(p.name for p in second.folder.iterdir()) == [f"{i:05d}.jpg" for i in range(4)]
    assert (second.folder / "00003.jpg").read_bytes() != a  # a shorter clip puts frame 3 elsewhere
    assert make_clip(tmp_path / "clip", num_frames=6).centres == first.centres
    assert (first.folder / "00003.jpg").read_bytes() == a
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip"]  # no temporary folder left


def test_make_clip_rejects_tiny_clips(tmp_path: Path) -> None:
    with pytest.raises(Sam2rtError, match="at least 2 frames"):
        make_clip(tmp_path / "clip", num_frames=1)


def test_cached_model_check_needs_a_manifest(tmp_path: Path) -> None:
    assert not _same_source(tmp_path, Weights(None, 0))
    assert "RANDOM WEIGHTS" in Weights(None, 0).label and not Weights(None, 0).official
