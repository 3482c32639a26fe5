"""sam2rt.calibration.sampling: deterministic, diverse clips across videos, JPEG folders and images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam2rt.calibration.sampling import Clip, Source, find_sources, plan_clips, read_clip
from sam2rt.errors import Sam2rtError


def _sources() -> list[Source]:
    return [Source(Path("a.mp4"), "video", 200), Source(Path("b"), "frames", 40), Source(Path("c.png"), "image", 1)]


def test_plan_is_deterministic_and_round_robin() -> None:
    clips = plan_clips(_sources(), frames=30, clip_len=4)
    assert clips == plan_clips(_sources(), frames=30, clip_len=4)
    assert [c.source.path.name for c in clips[:3]] == ["a.mp4", "b", "c.png"]  # every source before any repeat
    assert sum(c.length for c in clips) == 30
    assert [c.length for c in clips if c.source.kind == "image"] == [1]


def test_clips_spread_over_each_source_without_overlap() -> None:
    clips = plan_clips(_sources(), frames=60, clip_len=4)
    for source in _sources():
        mine = sorted((c for c in clips if c.source == source), key=lambda c: c.start)
        assert all(0 <= c.start and c.start + c.length <= source.length for c in mine)
        assert all(a.start + a.length <= b.start for a, b in zip(mine, mine[1:]))
    starts = sorted(c.start for c in clips if c.source.path.name == "a.mp4")
    assert starts[0] < 200 / len(starts) and starts[-1] > 200 - 2 * 200 / len(starts)  # first and last segment


def test_budget_larger_than_the_data_takes_everything_once() -> None:
    clips = plan_clips([Source(Path("b"), "frames", 10)], frames=1000, clip_len=4)
    assert [(c.start, c.length) for c in clips] == [(0, 4), (5, 4)]  # 2 clips fit; centred in their halves


@pytest.mark.parametrize("frames", [0, -3, 2.5])
def test_bad_frame_count(frames) -> None:
    with pytest.raises(Sam2rtError, match="--frames must be a positive"):
        plan_clips(_sources(), frames=frames)


def test_no_frames_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(Sam2rtError, match="yields no frames"):
        plan_clips(find_sources([tmp_path]), frames=8)
    with pytest.raises(Sam2rtError, match="does not exist"):
        find_sources([tmp_path / "missing.mp4"])


def test_find_sources_and_read_clip(tmp_path: Path) -> None:
    video = tmp_path / "clip"
    video.mkdir()
    for i in range(6):
        Image.new("RGB", (32, 24), (40 * i, 0, 0)).save(video / f"{i:05d}.jpg", quality=95)
    Image.new("RGB", (20, 10), (0, 200, 0)).save(tmp_path / "still.png")
    sources = find_sources([tmp_path])
    assert [(s.path.name, s.kind, s.length) for s in sources] == [("clip", "frames", 6), ("still.png", "image", 1)]
    clip = Clip(sources[0], 2, 3)
    frames = read_clip(clip)
    assert len(frames) == 3 and frames[0].shape == (24, 32, 3) and frames[0].dtype == np.uint8
    assert [round(f[0, 0, 0] / 40) for f in frames] == [2, 3, 4]
    (still,) = read_clip(Clip(sources[1], 0, 1))
    assert still.shape == (10, 20, 3) and still[0, 0, 1] == 200
