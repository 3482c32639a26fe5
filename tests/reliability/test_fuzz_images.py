"""Property-based fuzzing of the single-image path and the frame readers (issue 20): ``ImagePredictor.set_image``
and ``predict``, ``sam2rt segment``, and ``open_frames`` on folders and files of arbitrary names and bytes.

Arbitrary input either succeeds or raises Sam2rtError (the CLI: exit 2 and one line), with the predictor's
image and features unchanged and every pre-existing file byte-identical -- never another exception type.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from sam2rt.cli import main
from sam2rt.errors import Sam2rtError
from sam2rt.runtime.frames import open_frames
from sam2rt.runtime.image_predictor import ImagePredictor

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
                    phases=[Phase.explicit, Phase.reuse, Phase.generate], print_blob=True)
H, W = 48, 64

numbers = st.one_of(st.integers(-3, 80), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([1e308, 2**64, -0.0, 63.5]))
ragged = st.lists(st.one_of(numbers, st.lists(numbers, max_size=3)), max_size=4)
arrays = hnp.arrays(st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_]),
                    hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
anything = st.one_of(st.none(), numbers, st.text(max_size=4), ragged, arrays, st.booleans())


def mostly(valid: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.sampled_from((True, True, True, False)).flatmap(lambda ok: valid if ok else other)


@st.composite
def predict_args(draw: st.DrawFn) -> dict[str, Any]:
    """predict() keyword arguments, batched or not: valid ones, then (half the time) one of them replaced by
    anything or pushed out of range, so both the model calls and each check are reached."""
    batch = draw(st.sampled_from([None, 1, 2]))
    lead, rows = (() if batch is None else (batch,)), batch or 1
    n = draw(st.integers(1, 3))
    args: dict[str, Any] = {"multimask_output": draw(st.booleans())}
    kinds = draw(st.sampled_from(["points", "box", "both"]))
    if kinds in ("points", "both"):
        pts = draw(hnp.arrays(np.float64, (rows, n, 2), elements=st.floats(0, 47)))
        args["point_coords"] = pts.reshape(*lead, n, 2)
        args["point_labels"] = draw(hnp.arrays(np.int64, (rows, n), elements=st.sampled_from([1, 0]))).reshape(*lead, n)
    if kinds in ("box", "both"):
        x0, y0 = draw(st.floats(0, 30)), draw(st.floats(0, 20))
        args["box"] = np.asarray([[x0, y0, x0 + draw(st.floats(1, 30)), y0 + draw(st.floats(1, 25))]] * rows
                                 ).reshape(*lead, 4)
    if draw(st.integers(0, 4)) == 0:
        args["mask_input"] = np.zeros((1, 64, 64), np.float32)
    if draw(st.booleans()):  # break one argument
        key = draw(st.sampled_from(["point_coords", "point_labels", "box", "mask_input", "normalize_coords"]))
        bad = st.one_of(anything, st.sampled_from([[[70.0, 1.0]], [[1.0, float("nan")]], [[40, 10, 20, 30]],
                                                   np.tile([[5.0, 5.0]], (17, 1)), np.ones(17), [1, 2]]))
        args[key] = draw(bad)
    return args


@pytest.fixture(scope="module")
def predictor(exported_tiny_256: Path) -> ImagePredictor:
    p = ImagePredictor(exported_tiny_256)
    p.set_image(np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8))
    return p


def _state(p: ImagePredictor) -> tuple[Any, ...]:
    f = p._features
    return (p._is_image_set, p._is_batch, tuple(p._orig_hw), f["image_embed"].tobytes(),
            *(a.tobytes() for a in f["high_res_feats"]))


@SETTINGS
@given(args=predict_args())
def test_fuzz_image_predictor_predict(predictor: ImagePredictor, args: dict[str, Any]) -> None:
    before = _state(predictor)
    try:
        masks, ious, low = predictor.predict(**args)
        assert masks.shape[-2:] == (H, W) and np.isfinite(ious).all() and low.shape[-1] == 64
        event("predicted")
    except Sam2rtError:
        event("refused")
    assert _state(predictor) == before


@pytest.mark.parametrize("flag", ["multimask_output", "return_logits", "normalize_coords"])
def test_a_flag_that_is_not_a_bool_is_refused(predictor: ImagePredictor, flag: str) -> None:
    """The case the fuzzer found: normalize_coords=np.zeros((3, 0, 4)) raised numpy's ValueError (an empty
    array has no truth value); every flag now takes bool, numpy bool or 0/1, and refuses anything else."""
    before = _state(predictor)
    clicks = {"point_coords": np.array([[0.5, 0.2], [0.9, 0.1]]), "point_labels": np.array([1, 0])}  # pixels or [0, 1]
    for junk in (np.zeros((3, 0, 4)), np.array([True, False]), "yes", 2, None):
        with pytest.raises(Sam2rtError, match=f"{flag} must be True or False"):
            predictor.predict(**clicks, **{flag: junk})
    assert _state(predictor) == before
    for ok in (np.bool_(True), 1, 0):
        masks, _, _ = predictor.predict(**clicks, **{flag: ok})
        assert masks.shape[-2:] == (H, W)


_MODES = ["1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "I;16", "I", "F"]


@st.composite
def images(draw: st.DrawFn) -> Any:
    """A numpy array of any dtype/shape, or a PIL image of any mode (small)."""
    if draw(st.booleans()):
        return draw(hnp.arrays(st.sampled_from([np.uint8, np.uint16, np.float32, np.int64, np.bool_]),
                               hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6)))
    mode = draw(st.sampled_from(_MODES))
    size = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    image = Image.new(mode, size)
    noise = np.random.default_rng(draw(st.integers(0, 9))).integers(0, 255, size[::-1], dtype=np.uint8)
    image.paste(Image.fromarray(noise).convert(mode) if mode not in ("I;16",) else image)
    return image


@settings(SETTINGS, max_examples=15)
@given(image=images())
def test_fuzz_image_predictor_set_image(predictor: ImagePredictor, image: Any) -> None:
    before = _state(predictor)
    try:
        predictor.set_image(image)
    except Sam2rtError:
        assert _state(predictor) == before
    else:
        assert predictor._orig_hw[0] == (np.shape(image)[:2] if isinstance(image, np.ndarray) else image.size[::-1])
        predictor.set_image(np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8))


def _png(arr: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format="PNG")
    return buffer.getvalue()


_GOOD = _png(np.random.default_rng(2).integers(0, 255, (H, W, 3), dtype=np.uint8))
_CONTENTS = [_GOOD, _GOOD[: len(_GOOD) // 2], b"", b"GIF89a not really", _png(np.full((H, W), 900, np.uint16)),
             _png(np.zeros((2, 2, 3), np.uint8))]
flag_text = st.one_of(st.text(alphabet="0123456789,.-e ", max_size=12), st.text(max_size=6),
                      st.sampled_from(["30,20", "30,20,0", "5,5,40,30", "40,5,5,30", "1e9,1", "nan,1"]))


@settings(SETTINGS, max_examples=12)
@given(content=mostly(st.just(_GOOD), st.sampled_from(_CONTENTS)),
       points=st.lists(mostly(st.sampled_from(["30,20", "30,20,0", "10,40"]), flag_text), max_size=2),
       box=st.none() | mostly(st.sampled_from(["5,5,40,30", "0,0,64,48"]), flag_text), all_masks=st.booleans())
def test_fuzz_segment(exported_tiny_256: Path, tmp_path_factory: pytest.TempPathFactory, content: bytes,
                      points: list[str], box: str | None, all_masks: bool) -> None:
    folder = tmp_path_factory.mktemp("segment")
    image, out = folder / "in.png", folder / "mask.png"
    image.write_bytes(content)
    out.write_bytes(b"earlier")
    argv = ["segment", "--model", str(exported_tiny_256), "--image", str(image), "--out", str(out)]
    argv += [f"--point={p}" for p in points] + ([f"--box={box}"] if box is not None else [])
    argv += ["--all-masks"] if all_masks else []
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: only for option syntax
        code = e.code
    assert code in (0, 2)
    event(f"exit {code}")
    assert image.read_bytes() == content
    if code == 2:
        assert out.read_bytes() == b"earlier" and not list(folder.glob(".sam2rt-*"))


_NAMES = ["00000.jpg", "1.jpg", "00001.JPG", "2.jpeg", "².jpg", "٣.jpg", "a.jpg", "00003.png", "0.jpg",
          "notes.txt", ".hidden.jpg", "00004.Jpg"]
_FRAME_BYTES = [b"jpeg", b"", b"\xff\xd8\xff garbage", "png16", "small"]


def _frame_file(kind: Any) -> bytes:
    if kind == b"jpeg":
        buffer = io.BytesIO()
        Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(buffer, format="JPEG")
        return buffer.getvalue()
    if kind == "png16":
        return _png(np.full((8, 8), 900, np.uint16))
    if kind == "small":
        buffer = io.BytesIO()
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buffer, format="JPEG")
        return buffer.getvalue()
    return kind


@SETTINGS
@given(files=st.dictionaries(st.sampled_from(_NAMES), st.sampled_from(_FRAME_BYTES), max_size=5))
def test_fuzz_frame_folder(tmp_path_factory: pytest.TempPathFactory, files: dict[str, Any]) -> None:
    folder = tmp_path_factory.mktemp("frames")
    for name, kind in files.items():
        (folder / name).write_bytes(_frame_file(kind))
    try:
        frames = open_frames(folder)
        for i in range(len(frames)):
            frame = frames[i]
            assert frame.dtype == np.uint8 and frame.shape == (frames.height, frames.width, 3)
    except Sam2rtError:
        pass


@SETTINGS
@given(content=st.binary(max_size=64) | st.sampled_from(_CONTENTS), suffix=st.sampled_from([".mp4", ".png", ".jpg", ".mov"]))
def test_fuzz_video_file(tmp_path_factory: pytest.TempPathFactory, content: bytes, suffix: str) -> None:
    path = tmp_path_factory.mktemp("video") / f"clip{suffix}"
    path.write_bytes(content)
    try:
        frames = open_frames(path)
        assert len(frames) >= 1 and frames[0].shape == (frames.height, frames.width, 3)
    except Sam2rtError:
        pass
