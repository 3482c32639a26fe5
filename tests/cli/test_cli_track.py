"""The prompts file (sam2rt.prompts_file) and ``sam2rt track`` end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from sam2rt.cli import main
from sam2rt.errors import Sam2rtError
from sam2rt.prompts_file import Prompt, apply_prompt, load_prompts, prompts_from_flags

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FRAMES = DATA / "videos" / "bedroom_frames"
needs_frames = pytest.mark.skipif(not FRAMES.is_dir(), reason=f"test data not found at {FRAMES}")


def _write(tmp_path: Path, entries: Any, name: str = "prompts.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(entries))
    return path


def _png(path: Path, shape: tuple[int, int], box: tuple[int, int, int, int] | None, mode: str = "L") -> Path:
    """A mask PNG: 0 outside ``box`` (x0, y0, x1, y1), 255 inside."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros(shape, np.uint8)
    if box is not None:
        x0, y0, x1, y1 = box
        arr[y0:y1, x0:x1] = 255
    Image.fromarray(arr).convert(mode).save(path)
    return path


# --------------------------------------------------------------------------- prompts file: valid


def test_load_prompts_valid(tmp_path: Path) -> None:
    _png(tmp_path / "masks" / "cup.png", (20, 30), (5, 5, 10, 10), mode="RGB")
    path = _write(tmp_path, [
        {"frame": 0, "obj_id": 1, "points": [[10, 20], [30.5, 40]], "labels": [1, 0]},
        {"frame": 0, "obj_id": 2, "box": [1, 2, 30, 40]},
        {"frame": 3, "obj_id": 2, "box": [1, 2, 30, 40], "points": [[5, 5]], "labels": [0]},
        {"frame": 7, "obj_id": 9, "mask": "masks/cup.png"},
    ])
    p = load_prompts(path)
    assert [(q.frame, q.obj_id) for q in p] == [(0, 1), (0, 2), (3, 2), (7, 9)]
    assert p[0].points == ((10.0, 20.0), (30.5, 40.0)) and p[0].labels == (1, 0) and p[0].box is None
    assert p[1].box == (1.0, 2.0, 30.0, 40.0) and p[1].points is None
    assert p[2].box is not None and p[2].labels == (0,)
    assert p[3].mask == tmp_path / "masks" / "cup.png" and p[3].points is None
    assert "entry 3" in p[3].where
    with pytest.raises(Exception):
        p[0].frame = 2  # frozen


def test_prompts_from_flags() -> None:
    (p,) = prompts_from_flags(["10,20", "30,40,0"], "1,2,50,60")
    assert (p.frame, p.obj_id) == (0, 1)
    assert p.points == ((10.0, 20.0), (30.0, 40.0)) and p.labels == (1, 0)
    assert p.box == (1.0, 2.0, 50.0, 60.0)
    (only_box,) = prompts_from_flags([], "1,2,50,60")
    assert only_box.points is None


@pytest.mark.parametrize("points, box, needle", [
    ([], None, "no prompt"),
    (["10"], None, "--point"),
    (["a,b"], None, "--point"),
    (["1,2,3,4"], None, "--point"),
    (["1,2,2"], None, "LABEL"),
    ([], "1,2,3", "--box"),
    ([], "5,5,1,1", "x0 < x1"),
])
def test_prompts_from_flags_invalid(points: list[str], box: str | None, needle: str) -> None:
    with pytest.raises(Sam2rtError, match=needle):
        prompts_from_flags(points, box)


# --------------------------------------------------------------------------- prompts file: invalid

_OK = {"frame": 0, "obj_id": 1, "points": [[1, 2]], "labels": [1]}


@pytest.mark.parametrize("bad, needle", [
    ("not a dict", "must be a JSON object"),
    ({**_OK, "point": [[1, 2]]}, "unknown field"),
    ({"obj_id": 1, "box": [0, 0, 1, 1]}, 'missing "frame"'),
    ({"frame": 0, "box": [0, 0, 1, 1]}, 'missing "obj_id"'),
    ({**_OK, "frame": -1}, "start at 0"),
    ({**_OK, "frame": 1.5}, '"frame" must be an integer'),
    ({**_OK, "frame": True}, '"frame" must be an integer'),
    ({**_OK, "obj_id": "a"}, '"obj_id" must be an integer'),
    ({"frame": 0, "obj_id": 1}, "no prompt"),
    ({"frame": 0, "obj_id": 1, "points": [[1, 2]]}, "go together"),
    ({"frame": 0, "obj_id": 1, "labels": [1]}, "go together"),
    ({**_OK, "labels": [1, 1]}, "1 points but 2 labels"),
    ({**_OK, "labels": [2]}, '"labels" must be'),
    ({**_OK, "points": [1, 2]}, '"points" must be'),
    ({**_OK, "points": []}, '"points" must be'),
    ({**_OK, "points": [[1, "2"]]}, '"points" must be'),
    ({**_OK, "points": [[-1, 2]]}, ">= 0"),
    ({"frame": 0, "obj_id": 1, "box": [0, 0, 1]}, '"box" must be 4 numbers'),
    ({"frame": 0, "obj_id": 1, "box": [5, 0, 1, 9]}, "x0 < x1"),
    ({"frame": 0, "obj_id": 1, "mask": 3}, '"mask" must be'),
    ({"frame": 0, "obj_id": 1, "mask": "nope.png"}, "does not exist"),
    ({**_OK, "mask": "m.png"}, "not both"),
])
def test_invalid_entry_names_the_entry(tmp_path: Path, bad: Any, needle: str) -> None:
    _png(tmp_path / "m.png", (8, 8), (1, 1, 4, 4))
    path = _write(tmp_path, [_OK, bad])
    with pytest.raises(Sam2rtError, match=needle) as info:
        load_prompts(path)
    assert f"{path} entry 1" in str(info.value)


def test_empty_and_non_png_masks(tmp_path: Path) -> None:
    _png(tmp_path / "empty.png", (8, 8), None)
    Image.new("RGB", (8, 8), (255, 255, 255)).save(tmp_path / "m.jpg")
    for name, needle in (("empty.png", "no non-zero pixel"), ("m.jpg", "save the mask as PNG")):
        path = _write(tmp_path, [{"frame": 0, "obj_id": 1, "mask": name}])
        with pytest.raises(Sam2rtError, match=needle) as info:
            load_prompts(path)
        assert "entry 0" in str(info.value)


def test_duplicate_frame_and_object(tmp_path: Path) -> None:
    path = _write(tmp_path, [_OK, {"frame": 0, "obj_id": 2, "box": [0, 0, 5, 5]}, {**_OK, "labels": [0]}])
    with pytest.raises(Sam2rtError, match="entry 2.*already prompted.*entry 0"):
        load_prompts(path)


@pytest.mark.parametrize("text, needle", [
    ("{not json", "not valid JSON"),
    ("[]", "non-empty JSON list"),
    ('{"frame": 0}', "non-empty JSON list"),
])
def test_invalid_file(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(Sam2rtError, match=needle):
        load_prompts(path)
    with pytest.raises(Sam2rtError, match="does not exist"):
        load_prompts(tmp_path / "missing.json")


# --------------------------------------------------------------------------- apply_prompt


class _Recorder:
    """Stands in for a predictor: records the calls apply_prompt makes."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, tuple]] = []
        self.fail = fail

    def add_new_points_or_box(self, state, frame_idx, obj_id, points=None, labels=None, box=None):
        if self.fail:
            raise Sam2rtError("points/box fall outside the frame")
        self.calls.append(("points", (frame_idx, obj_id, points, labels, box)))
        return frame_idx, [obj_id], np.zeros((1, 1, 10, 20), np.float32)

    def add_new_mask(self, state, frame_idx, obj_id, mask):
        self.calls.append(("mask", (frame_idx, obj_id, mask)))
        return frame_idx, [obj_id], np.zeros((1, 1, 10, 20), np.float32)


_STATE = {"num_frames": 5, "video_height": 10, "video_width": 20}


def test_apply_prompt_calls_the_predictor(tmp_path: Path) -> None:
    rec = _Recorder()
    apply_prompt(rec, _STATE, Prompt(1, 3, points=((1, 2),), labels=(1,), box=(0, 0, 5, 5), where="e"))
    kind, (frame, obj, points, labels, box) = rec.calls[0]
    assert (kind, frame, obj) == ("points", 1, 3)
    assert points.dtype == np.float32 and points.shape == (1, 2) and labels.tolist() == [1]
    assert box.tolist() == [0, 0, 5, 5]
    mask = _png(tmp_path / "m.png", (10, 20), (2, 2, 6, 6))
    apply_prompt(rec, _STATE, Prompt(4, 3, mask=mask, where="e"))
    kind, (frame, obj, arr) = rec.calls[1]
    assert kind == "mask" and arr.dtype == bool and arr.shape == (10, 20) and arr.sum() == 16


def test_apply_prompt_errors_name_the_prompt(tmp_path: Path) -> None:
    with pytest.raises(Sam2rtError, match="entry 7: frame 5 is past the end"):
        apply_prompt(_Recorder(), _STATE, Prompt(5, 1, box=(0, 0, 1, 1), where="entry 7"))
    mask = _png(tmp_path / "m.png", (11, 20), (2, 2, 6, 6))
    with pytest.raises(Sam2rtError, match="entry 2: .*20x11 but the video is 20x10"):
        apply_prompt(_Recorder(), _STATE, Prompt(0, 1, mask=mask, where="entry 2"))
    with pytest.raises(Sam2rtError, match="entry 3: points/box fall outside"):
        apply_prompt(_Recorder(fail=True), _STATE, Prompt(0, 1, box=(0, 0, 1, 1), where="entry 3"))


# --------------------------------------------------------------------------- sam2rt track


@pytest.fixture
def few_frames(tmp_path: Path) -> Path:
    """The first 4 bedroom frames (960x540) in their own folder."""
    if not FRAMES.is_dir():
        pytest.skip(f"test data not found at {FRAMES}")
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(4):
        shutil.copy(FRAMES / f"{i:05d}.jpg", folder)
    return folder


def _frame_count(video: Path) -> int:
    capture = cv2.VideoCapture(str(video))
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".sam2rt")] if folder.exists() else []


@needs_frames
def test_track_end_to_end(exported_tiny_256: Path, few_frames: Path, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    _png(tmp_path / "masks_in" / "obj3.png", (540, 960), (600, 100, 760, 300))
    prompts = _write(tmp_path, [
        {"frame": 0, "obj_id": 1, "points": [[400, 300]], "labels": [1]},
        {"frame": 1, "obj_id": 2, "box": [100, 100, 300, 400]},  # also on frame 1: tracked both ways
        {"frame": 2, "obj_id": 3, "mask": "masks_in/obj3.png"},
    ])
    out, masks = tmp_path / "out" / "overlay.mp4", tmp_path / "out" / "masks"
    rc = main(["track", "--model", str(exported_tiny_256), "--video", str(few_frames), "--prompts", str(prompts),
               "--out", str(out), "--masks-dir", str(masks), "--threads", "2"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert out.is_file() and _frame_count(out) == 4
    for obj_id in (1, 2, 3):
        files = sorted((masks / str(obj_id)).iterdir())
        assert [f.name for f in files] == [f"{i:05d}.png" for i in range(4)]
        png = cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED)
        assert png.shape == (540, 960) and png.dtype == np.uint8 and set(np.unique(png)) <= {0, 255}
    assert "frames: 4" in printed and "objects: 3" in printed and "FPS" in printed and "wall time" in printed
    assert _leftovers(out.parent) == [] and _leftovers(tmp_path) == []


@needs_frames
def test_track_point_flags(exported_tiny_256: Path, few_frames: Path, tmp_path: Path) -> None:
    out = tmp_path / "flags.mp4"
    rc = main(["track", "--model", str(exported_tiny_256), "--video", str(few_frames), "--point", "400,300",
               "--point", "100,100,0", "--out", str(out)])
    assert rc == 0 and _frame_count(out) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flags.mp4", "frames"]  # no masks without --masks-dir


def test_track_bad_model_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model"
    model.mkdir()
    out, masks = tmp_path / "new" / "overlay.mp4", tmp_path / "new_masks"
    rc = main(["track", "--model", str(model), "--video", str(tmp_path / "nope.mp4"), "--point", "1,1",
               "--out", str(out), "--masks-dir", str(masks)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("sam2rt: error:") and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_track_bad_video_with_a_real_model(exported_tiny_256: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "new" / "overlay.mp4"
    rc = main(["track", "--model", str(exported_tiny_256), "--video", str(tmp_path / "nope.mp4"),
               "--point", "1,1", "--out", str(out), "--masks-dir", str(tmp_path / "m")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("extra, needle", [
    (["--out", "x.avi"], ".mp4"),
    (["--out", "x.mp4", "--prompts", "p.json"], "not both"),
])
def test_track_argument_errors(tmp_path: Path, extra: list[str], needle: str,
                               capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rc = main(["track", "--model", "m", "--video", "v", "--point", "1,1", *extra])
    assert rc == 2 and needle in capsys.readouterr().err


def test_track_refuses_a_non_empty_masks_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "keep.txt").write_text("mine")
    rc = main(["track", "--model", "m", "--video", "v", "--point", "1,1", "--out", str(tmp_path / "o.mp4"),
               "--masks-dir", str(tmp_path / "masks")])
    assert rc == 2 and "not an empty folder" in capsys.readouterr().err


@needs_frames
def test_track_prompt_past_the_end(exported_tiny_256: Path, few_frames: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    prompts = _write(tmp_path, [{"frame": 9, "obj_id": 1, "box": [10, 10, 50, 50]}])
    rc = main(["track", "--model", str(exported_tiny_256), "--video", str(few_frames), "--prompts", str(prompts),
               "--out", str(tmp_path / "o" / "o.mp4")])
    assert rc == 2 and "entry 0: frame 9 is past the end" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@needs_frames
def test_track_failure_leaves_nothing(exported_tiny_256: Path, few_frames: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import sam2rt.cli.track as cli_track

    def broken(*args: Any, **kwargs: Any) -> None:
        raise Sam2rtError("disk full (simulated)")

    monkeypatch.setattr(cli_track, "write_overlay", broken)
    out, masks = tmp_path / "a" / "b" / "overlay.mp4", tmp_path / "masks"
    rc = main(["track", "--model", str(exported_tiny_256), "--video", str(few_frames), "--point", "400,300",
               "--out", str(out), "--masks-dir", str(masks)])
    assert rc == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


def _write_mp4(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def test_video_fps(tmp_path: Path) -> None:
    from sam2rt.cli.track import DEFAULT_FPS, video_fps

    video = _write_mp4(tmp_path / "v.mp4", [np.full((64, 96, 3), i * 40, np.uint8) for i in range(3)], 12)
    assert video_fps(video) == pytest.approx(12)
    assert video_fps(tmp_path) == DEFAULT_FPS


@needs_frames
def test_track_video_file_keeps_its_frame_rate(exported_tiny_256: Path, few_frames: Path, tmp_path: Path) -> None:
    frames = [cv2.resize(cv2.imread(str(p)), (320, 180)) for p in sorted(few_frames.iterdir())[:3]]
    video = _write_mp4(tmp_path / "clip.mp4", frames, 12)
    out = tmp_path / "o.mp4"
    rc = main(["track", "--model", str(exported_tiny_256), "--video", str(video), "--box", "100,40,220,160",
               "--out", str(out)])
    capture = cv2.VideoCapture(str(out))
    fps = capture.get(cv2.CAP_PROP_FPS)
    size = (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    capture.release()
    assert rc == 0 and _frame_count(out) == 3 and fps == pytest.approx(12) and size == (320, 180)
