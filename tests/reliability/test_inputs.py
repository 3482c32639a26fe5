"""Issue 12, bad inputs: verify --threshold (4), JPEG index collisions and 16-bit frames (5), export
--cond-slots (6), cached checkpoints (7), decompression bombs and deep nesting (12), API validation (13),
messages (17)."""

from __future__ import annotations

import functools
import http.server
import json
import threading
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
from PIL import Image

from sam2rt.cli import main
from sam2rt.errors import Sam2rtError
from sam2rt.export.download import download
from sam2rt.prompts_file import Prompt, apply_prompt, load_prompts
from sam2rt.runtime.frames import open_frames
from sam2rt.runtime.predictor import VideoPredictor


# --------------------------------------------------------------------------- 4: verify --threshold


@pytest.mark.parametrize("value", ["nan", "2", "-0.1", "inf"])
def test_verify_threshold_outside_0_1_refused_up_front(value: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["verify", "--model", str(tmp_path / "no_model"), "--random-weights", "--video", "v",
                 "--prompts", "p.json", "--threshold", value])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"sam2rt: error: --threshold {float(value)}") and "from 0 to 1" in err


# --------------------------------------------------------------------------- 5: frames


def test_jpeg_index_collision_is_refused(frames: Path) -> None:
    (frames / "0.jpg").write_bytes((frames / "00001.jpg").read_bytes())
    with pytest.raises(Sam2rtError, match=r"0.jpg and 00000.jpg in .* are both frame 0"):
        open_frames(frames)


def test_16bit_png_frames_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    Image.fromarray(np.full((8, 8), 1000, np.uint16)).save(folder / "00000.jpg", format="PNG")  # mode I;16
    with pytest.raises(Sam2rtError, match="16/32-bit"):
        open_frames(folder)


# --------------------------------------------------------------------------- 6: export --cond-slots


@pytest.mark.parametrize("slots", ["0", "1"])
def test_export_cond_slots_below_2_refused(slots: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    code = main(["export", "--model", "sam2.1_hiera_tiny", "--out", str(tmp_path / "m"), "--random-weights",
                 "--image-size", "256", "--cond-slots", slots])
    assert code == 2 and "--cond-slots" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


# --------------------------------------------------------------------------- 7: cached checkpoints

NAME = "sam2.1_hiera_tiny"
CLOSED_PORT_URL = "http://127.0.0.1:9/none.pt"


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """A local HTTP server with one checkpoint-like file; yields (url, its bytes)."""
    root = tmp_path / "www"
    root.mkdir()
    payload = bytes(range(256)) * 40
    (root / "ckpt.pt").write_bytes(payload)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/ckpt.pt", payload
    server.shutdown()
    server.server_close()


def test_download_zero_byte_cached_checkpoint_is_fetched_again(served: tuple[str, bytes], tmp_path: Path) -> None:
    url, payload = served
    target = tmp_path / "cache" / "checkpoints" / f"{NAME}.pt"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"")
    assert download(NAME, tmp_path / "cache", progress=False, url=url).read_bytes() == payload
    target.write_bytes(payload[:100])  # truncated after download: its record says otherwise
    assert download(NAME, tmp_path / "cache", progress=False, url=url).read_bytes() == payload


def test_download_unusable_cache_and_no_network(tmp_path: Path) -> None:
    target = tmp_path / "checkpoints" / f"{NAME}.pt"
    target.parent.mkdir(parents=True)
    with zipfile.ZipFile(target, "w") as z:
        z.writestr("archive/data.pkl", b"x" * 1000)
    target.write_bytes(target.read_bytes()[:-30])  # a truncated zip put there by hand
    with pytest.raises(Sam2rtError, match=r"cached .* is unusable \(.*not a complete PyTorch checkpoint\)"):
        download(NAME, tmp_path, progress=False, timeout=5, url=CLOSED_PORT_URL)
    target.write_bytes(b"")
    with pytest.raises(Sam2rtError, match=r"unusable \(0 bytes\)"):
        download(NAME, tmp_path, progress=False, timeout=5, url=CLOSED_PORT_URL)


# --------------------------------------------------------------------------- 12: bombs and nesting


def test_decompression_bomb_frames_and_masks(frames: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(np.full((48, 64), 255, np.uint8)).save(tmp_path / "mask.png")
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps([{"frame": 0, "obj_id": 1, "mask": "mask.png"}]))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64x48 is then past Pillow's 2x bomb limit
    with pytest.raises(Sam2rtError, match="too large to decode safely"):
        open_frames(frames)
    with pytest.raises(Sam2rtError, match=r"entry 0: mask .* too large to decode safely"):
        load_prompts(prompts)


def test_prompts_file_nested_200000_deep(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(Sam2rtError, match="nests JSON lists/objects too deeply"):
        load_prompts(path)


# --------------------------------------------------------------------------- 13: API validation


@pytest.fixture(scope="module")
def predictor(exported_tiny_256: Path) -> VideoPredictor:
    return VideoPredictor(exported_tiny_256, progress=False)


def test_api_preprocess_bogus(exported_tiny_256: Path) -> None:
    with pytest.raises(Sam2rtError, match="preprocess must be one of 'official', 'fast', got 'bogus'"):
        VideoPredictor(exported_tiny_256, preprocess="bogus")


@pytest.mark.parametrize("kwargs, needle", [
    ({"points": [1, 2, 3], "labels": [1]}, "shaped (N, 2)"),
    ({"points": [[1, 2, 3]], "labels": [1]}, "shaped (N, 2)"),
    ({"points": [[1, 2], [3]], "labels": [1, 1]}, "must be numbers shaped (N, 2)"),
    ({"points": [[1, 2]], "labels": [[1], [1, 0]]}, "labels must be 1 (positive) or 0"),
    ({"box": [50, 40, 10, 10]}, "x0 < x1 and y0 < y1"),
    ({"points": [[1e308, 1]], "labels": [1], "normalize_coords": False}, "too large"),
])
def test_api_points_and_box_validation_leaves_state_unchanged(kwargs: dict[str, Any], needle: str,
                                                              predictor: VideoPredictor,
                                                              snapshot: Callable[[Any], Any]) -> None:
    state = predictor.init_state([np.zeros((48, 64, 3), np.uint8)] * 2)
    predictor.add_new_points_or_box(state, 0, 7, points=[[10, 10]], labels=[1])
    before = snapshot(state)
    with pytest.raises(Sam2rtError) as info:
        predictor.add_new_points_or_box(state, 1, 8, **kwargs)
    assert needle in str(info.value)
    assert snapshot(state) == before


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 5, 3), (5, 0, 3)])
def test_api_init_state_refuses_empty_frames(shape: tuple[int, int, int], predictor: VideoPredictor) -> None:
    with pytest.raises(Sam2rtError, match="is empty"):
        predictor.init_state([np.zeros(shape, np.uint8)])


def test_api_ragged_mask(predictor: VideoPredictor) -> None:
    state = predictor.init_state([np.zeros((48, 64, 3), np.uint8)])
    with pytest.raises(Sam2rtError, match="mask must be a 2-D"):
        predictor.add_new_mask(state, 0, 1, [[1, 0], [1]])


# --------------------------------------------------------------------------- 17: messages

STATE = {"num_frames": 2, "video_height": 48, "video_width": 64}


def test_wrong_size_mask_names_the_entry_once(tmp_path: Path) -> None:
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(tmp_path / "m.png")
    prompt = Prompt(0, 1, mask=tmp_path / "m.png", where="p.json entry 0")
    with pytest.raises(Sam2rtError) as info:
        apply_prompt(None, STATE, prompt)
    assert str(info.value).count("entry 0:") == 1 and "10x10 but the video is 64x48" in str(info.value)


@pytest.mark.parametrize("points", [((70.0, 10.0),), ((1e308, 1.0),)])
def test_cli_prompt_outside_the_video_message(points: tuple[tuple[float, float], ...]) -> None:
    with pytest.raises(Sam2rtError) as info:
        apply_prompt(None, STATE, Prompt(0, 1, points=points, labels=(1,), where="--point/--box"))
    message = str(info.value)
    assert "outside the 64x48 video" in message
    assert "normalize_coords" not in message and "NaN" not in message


def test_mask_dot_names_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"frame": 0, "obj_id": 1, "mask": "."}]))
    with pytest.raises(Sam2rtError) as info:
        load_prompts(path)
    assert f"is the folder {tmp_path.resolve()}, not a PNG file" in str(info.value)
