"""Issue 20, the API: limits on points, boxes and objects (4), 16-bit images (5), validate first then change
state (9), type misuse and one box rule (10), the checks segment/ImagePredictor share with track (11)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from PIL import Image

from sam2rt.cli import main
from sam2rt.errors import Sam2rtError
from sam2rt.runtime.image_predictor import ImagePredictor
from sam2rt.runtime.predictor import VideoPredictor
from sam2rt.runtime.stream import StreamTracker


def _rgb(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def image_predictor(exported_tiny_256: Path) -> ImagePredictor:
    return ImagePredictor(exported_tiny_256)


@pytest.fixture(scope="module")
def video_predictor(exported_tiny_256: Path) -> VideoPredictor:
    return VideoPredictor(exported_tiny_256, progress=False)


def _error_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert code == 2 and lines[-1].startswith("sam2rt: error: ") and "Traceback" not in err, err
    return lines[-1]


# --------------------------------------------------------------------------- 4: limits


def test_item04_points_and_objects_are_limited_on_onnx_runtime(video_predictor: VideoPredictor, frames: Path,
                                                               snapshot: Callable[[Any], Any]) -> None:
    limits = video_predictor.engine.manifest.bank
    state = video_predictor.init_state(str(frames))
    many = np.tile([[30.0, 20.0]], (limits.max_points + 1, 1))
    before = snapshot(state)
    with pytest.raises(Sam2rtError, match=f"at most {limits.max_points}"):
        video_predictor.add_new_points_or_box(state, 0, 1, points=many, labels=np.ones(len(many)))
    assert snapshot(state) == before
    for obj_id in range(limits.max_objects):
        video_predictor.add_new_points_or_box(state, 0, obj_id, points=[[30, 20]], labels=[1])
    before = snapshot(state)
    with pytest.raises(Sam2rtError, match=f"at most {limits.max_objects} objects"):
        video_predictor.add_new_points_or_box(state, 0, 999, box=[1, 1, 20, 20])
    with pytest.raises(Sam2rtError, match=f"at most {limits.max_objects} objects"):
        video_predictor.add_new_mask(state, 0, 999, np.ones((48, 64), bool))
    assert snapshot(state) == before
    video_predictor.add_new_points_or_box(state, 0, 3, points=[[10, 10]], labels=[0], clear_old_points=False)


def test_item04_stream_and_image_predictor_limit_points(exported_tiny_256: Path, image_predictor: ImagePredictor) -> None:
    limit = image_predictor.manifest.bank.max_points
    image_predictor.set_image(_rgb())
    too_many = np.tile([[30.0, 20.0]], (limit + 1, 1))
    with pytest.raises(Sam2rtError, match=f"at most {limit}"):
        image_predictor.predict(point_coords=too_many, point_labels=np.ones(limit + 1))
    padded = np.full(limit + 1, -1)  # padding points (-1) are not clicks
    padded[0] = 1
    image_predictor.predict(point_coords=too_many, point_labels=padded)
    tracker = StreamTracker(exported_tiny_256)
    tracker.load_first_frame(_rgb())
    with pytest.raises(Sam2rtError, match=f"at most {limit}"):
        tracker.add_new_prompt(0, 1, points=too_many, labels=np.ones(limit + 1))
    assert tracker.obj_ids == []


def test_item04_many_boxes_are_decoded_in_chunks(image_predictor: ImagePredictor,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Many boxes in one predict (1 000 took 13 GB): the decoder sees at most ``chunk`` prompts at a time (its
    memory grows with the batch), and every box gets the result it gets alone."""
    image_predictor.set_image(_rgb())
    rng = np.random.default_rng(3)
    x0, y0 = rng.uniform(0, 30, 40), rng.uniform(0, 20, 40)
    boxes = np.stack([x0, y0, x0 + rng.uniform(5, 30, 40), y0 + rng.uniform(5, 25, 40)], axis=1)
    decoder = image_predictor.runners["mask_decoder"]
    sizes: list[int] = []
    real_run = decoder.run
    monkeypatch.setattr(decoder, "run", lambda feeds: sizes.append(len(feeds["point_coords"])) or real_run(feeds))
    masks, ious, low = image_predictor.predict(box=boxes, multimask_output=False)
    assert masks.shape == (40, 1, 48, 64) and ious.shape == (40, 1) and low.shape[:2] == (40, 1)
    assert image_predictor.chunk < 40 and max(sizes) == image_predictor.chunk and sum(sizes) == 40
    for i in (0, image_predictor.chunk - 1, image_predictor.chunk, 39):  # inside and across chunk borders
        alone = image_predictor.predict(box=boxes[i], multimask_output=False)
        np.testing.assert_array_equal(masks[i], alone[0])
        np.testing.assert_allclose(low[i], alone[2], rtol=0, atol=1e-5)


def test_item04_an_output_larger_than_memory_is_refused(image_predictor: ImagePredictor,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The returned masks (B, C, H, W) float32 cannot be chunked: past the available memory the call is one error
    before any decoding, not an out-of-memory kill."""
    from sam2rt.runtime import image_predictor as module

    image_predictor.set_image(_rgb())  # 64x48
    boxes = np.tile([[2.0, 2.0, 30.0, 30.0]], (100, 1))
    need = 100 * 3 * 48 * 64 * 4
    monkeypatch.setattr(module, "available_memory", lambda: need - 1)
    decoder = image_predictor.runners["mask_decoder"]
    monkeypatch.setattr(decoder, "run", lambda feeds: pytest.fail("decoded an output that cannot fit"))
    with pytest.raises(Sam2rtError, match=r"would need .* GiB \(100 prompt\(s\) x 3 mask\(s\) of 64x48"):
        image_predictor.predict(box=boxes)
    monkeypatch.undo()
    monkeypatch.setattr(module, "available_memory", lambda: need - 1)
    assert image_predictor.predict(box=boxes, multimask_output=False)[0].shape == (100, 1, 48, 64)  # a third fits


# --------------------------------------------------------------------------- 5: 16-bit images


def test_item05_16bit_images_are_scaled_not_white(image_predictor: ImagePredictor, exported_tiny_256: Path,
                                                  tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grey16 = np.random.default_rng(0).integers(0, 65536, (48, 64), dtype=np.uint16)
    expected = np.rint(grey16 / 257.0).astype(np.uint8)  # v * 255 / 65535
    path = tmp_path / "grey16.png"
    Image.fromarray(grey16).save(path)
    with Image.open(path) as image:
        image_predictor.set_image(image)
    embed16 = image_predictor.get_image_embedding().copy()
    image_predictor.set_image(np.repeat(expected[..., None], 3, axis=2))
    np.testing.assert_array_equal(embed16, image_predictor.get_image_embedding())
    with pytest.raises(Sam2rtError, match="no known range"):
        image_predictor.set_image(Image.fromarray(grey16.astype(np.float32)))
    with pytest.raises(Sam2rtError, match="16-bit"):
        image_predictor.set_image(np.repeat(grey16[..., None], 3, axis=2))
    out = tmp_path / "mask.png"
    assert main(["segment", "--model", str(exported_tiny_256), "--image", str(path), "--box", "5,5,40,30",
                 "--out", str(out)]) == 0
    assert out.is_file()


# --------------------------------------------------------------------------- 9: validate first


def test_item09_prompt_on_an_undecodable_frame_registers_nothing(video_predictor: VideoPredictor, frames: Path,
                                                                  snapshot: Callable[[Any], Any]) -> None:
    (frames / "00002.jpg").write_bytes(b"not a jpeg")
    state = video_predictor.init_state(str(frames))
    before = snapshot(state)
    with pytest.raises(Sam2rtError, match="00002.jpg"):
        video_predictor.add_new_points_or_box(state, 2, 7, points=[[30, 20]], labels=[1])
    with pytest.raises(Sam2rtError, match="00002.jpg"):
        video_predictor.add_new_mask(state, 2, 7, np.ones((48, 64), bool))
    assert snapshot(state) == before and state["obj_ids"] == []
    video_predictor.add_new_points_or_box(state, 0, 1, points=[[30, 20]], labels=[1])
    assert [f for f, _, _ in video_predictor.propagate_in_video(state, max_frame_num_to_track=1)] == [0, 1]


def test_item09_a_backend_failure_mid_prompt_is_rolled_back(video_predictor: VideoPredictor, frames: Path,
                                                            snapshot: Callable[[Any], Any],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    state = video_predictor.init_state(str(frames))
    video_predictor.add_new_points_or_box(state, 0, 1, points=[[30, 20]], labels=[1])
    before = snapshot(state)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the backend failed")

    monkeypatch.setattr(video_predictor.engine, "track", broken)
    monkeypatch.setattr(video_predictor.engine, "mask_as_output", broken)
    for call in (lambda: video_predictor.add_new_points_or_box(state, 1, 7, box=[1, 1, 30, 30]),
                 lambda: video_predictor.add_new_points_or_box(state, 0, 1, points=[[5, 5]], labels=[0],
                                                               clear_old_points=False),
                 lambda: video_predictor.add_new_mask(state, 0, 1, np.ones((48, 64), bool))):
        with pytest.raises(RuntimeError):
            call()
        assert snapshot(state) == before


# --------------------------------------------------------------------------- 10: types, one box rule


def test_item10_type_misuse_is_a_sam2rt_error(video_predictor: VideoPredictor, image_predictor: ImagePredictor,
                                              exported_tiny_256: Path, frames: Path,
                                              snapshot: Callable[[Any], Any]) -> None:
    state = video_predictor.init_state(str(frames))
    video_predictor.add_new_points_or_box(state, 0, 1, points=[[30, 20]], labels=[1])
    before = snapshot(state)
    for bad in ("2", -1, 1.5):
        with pytest.raises(Sam2rtError, match="max_frame_num_to_track"):
            next(video_predictor.propagate_in_video(state, max_frame_num_to_track=bad))
    assert snapshot(state) == before  # refused before the preflight moved anything
    tracker = StreamTracker(exported_tiny_256)
    tracker.load_first_frame(_rgb())
    tracker.add_new_prompt(0, 1, points=[[30, 20]], labels=[1])
    with pytest.raises(Sam2rtError, match="mask_dtype"):
        tracker.track(_rgb(seed=1), output="result", mask_dtype="garbage")
    image_predictor.set_image(_rgb())
    with pytest.raises(Sam2rtError, match="point_labels"):
        image_predictor.predict(point_coords=[[1, 2], [3, 4]], point_labels=[[1], [1, 0]])
    long_ragged = [-1.9796134161277096e+16, [1.8444426246277096e+16], [-1.192092896e-07, 63.5, -0.0], 63.5]
    with pytest.raises(Sam2rtError, match="ragged"):  # found by the fuzzing: its message had no shape to show
        image_predictor.predict(point_coords=[[1, 2]] * 4, point_labels=long_ragged)
    with pytest.raises(Sam2rtError, match="mask_threshold"):
        ImagePredictor(exported_tiny_256, mask_threshold="abc")


def test_item10_one_box_rule(video_predictor: VideoPredictor, image_predictor: ImagePredictor, frames: Path,
                             tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image_predictor.set_image(_rgb())
    state = video_predictor.init_state(str(frames))
    for box in ([40, 10, 20, 30], [10, 30, 40, 20], [10, 10, 10, 30]):  # x1 < x0, y1 < y0, x0 == x1
        with pytest.raises(Sam2rtError, match="x0 < x1 and y0 < y1"):
            image_predictor.predict(box=box)
        with pytest.raises(Sam2rtError, match="x0 < x1 and y0 < y1"):
            image_predictor.predict(box=np.array([[1, 1, 20, 20], box]))
        with pytest.raises(Sam2rtError, match="x0 < x1 and y0 < y1"):
            video_predictor.add_new_points_or_box(state, 0, 1, box=box)
        line = _error_line(["segment", "--model", "m", "--image", "i.png", "--box", ",".join(map(str, box)),
                            "--out", str(tmp_path / "m.png")], capsys)
        assert "x0 < x1 and 0 <= y0 < y1" in line


# --------------------------------------------------------------------------- 11: shared checks


def test_item11_image_predictor_checks_the_model_folder(model_copy: Path) -> None:
    manifest = json.loads((model_copy / "manifest.json").read_text())
    tampered = json.loads(json.dumps(manifest))
    tampered["graphs"]["mask_decoder"]["sha256"] = "0" * 64
    (model_copy / "manifest.json").write_text(json.dumps(tampered))
    with pytest.raises(Sam2rtError, match="does not match"):
        ImagePredictor(model_copy)
    resized = json.loads(json.dumps(manifest))
    resized["model"]["image_size"] = 512
    (model_copy / "manifest.json").write_text(json.dumps(resized))
    with pytest.raises(Sam2rtError, match="image_size 512"):
        ImagePredictor(model_copy)
    (model_copy / "manifest.json").write_text(json.dumps(manifest))
    (model_copy / "constants.npz").write_text("no_obj_ptr = 0.0\n")  # a text file
    with pytest.raises(Sam2rtError, match="not an .npz archive") as error:
        ImagePredictor(model_copy)
    assert "pickled" not in str(error.value)


def test_item11_segment_checks_outputs_and_image_like_track(exported_tiny_256: Path, tmp_path: Path,
                                                            readonly_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "in.png"
    Image.fromarray(_rgb()).save(image)
    model = str(tmp_path / "no_model")  # the output checks come before the model loads
    for out, expected in ((Path("/proc/sam2rt-test/m.png"), "cannot write"), (readonly_dir / "m.png", "cannot write"),
                          (Path("/dev/full"), "PNG")):
        line = _error_line(["segment", "--model", model, "--image", str(image), "--point", "1,1",
                            "--out", str(out)], capsys)
        assert expected in line and "no_model" not in line
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64x48 is then past Pillow's 2x bomb limit
    line = _error_line(["segment", "--model", str(exported_tiny_256), "--image", str(image), "--point", "1,1",
                        "--out", str(tmp_path / "m.png")], capsys)
    assert "too large to decode safely" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "readonly"]
