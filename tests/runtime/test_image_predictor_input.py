"""ImagePredictor: bad input raises Sam2rtError before anything runs, and the predictor's state is unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from sam2rt.errors import Sam2rtError
from sam2rt.runtime.image_predictor import ImagePredictor

SIZE = 256  # exported_tiny_256


def _state(p: ImagePredictor) -> tuple:
    return p._is_image_set, p._is_batch, p._orig_hw, p._features


BAD_PROMPTS = {
    "labels without points": dict(point_labels=[1]),
    "points without labels": dict(point_coords=[[10, 10]]),
    "no prompt": dict(),
    "mask alone": dict(mask_input=np.zeros((1, 64, 64), np.float32)),
    "label count": dict(point_coords=[[10, 10], [20, 20]], point_labels=[1]),
    "label value": dict(point_coords=[[10, 10]], point_labels=[2]),
    "NaN point": dict(point_coords=[[np.nan, 10]], point_labels=[1]),
    "text point": dict(point_coords=[["a", "b"]], point_labels=[1]),
    "point outside": dict(point_coords=[[161, 10]], point_labels=[1]),
    "normalized point outside": dict(point_coords=[[10, 10]], point_labels=[1], normalize_coords=False),
    "box shape": dict(box=[1, 2, 3]),
    "box count": dict(box=[[1, 2, 30, 40], [5, 5, 50, 50]], point_coords=[[10, 10]], point_labels=[1]),
    "mask shape": dict(point_coords=[[10, 10]], point_labels=[1], mask_input=np.zeros((1, 32, 32), np.float32)),
}


def test_bad_input_raises_and_keeps_state(exported_tiny_256) -> None:
    p = ImagePredictor(exported_tiny_256)
    with pytest.raises(Sam2rtError, match=r"set_image\(\.\.\.\) before"):
        p.predict(point_coords=[[1, 1]], point_labels=[1])
    with pytest.raises(Sam2rtError, match="set_image"):
        p.get_image_embedding()
    rgb = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    p.set_image(rgb)
    good = dict(point_coords=[[80, 60]], point_labels=[1])
    before, state = p.predict(**good), _state(p)
    for what, kwargs in BAD_PROMPTS.items():
        with pytest.raises(Sam2rtError):
            p.predict(**kwargs)
        assert _state(p) == state, what
    for image in (rgb.astype(np.float32), rgb[..., 0], rgb[..., :2], "image.jpg", rgb[:0]):
        with pytest.raises(Sam2rtError, match="RGB image|empty"):
            p.set_image(image)
        assert _state(p) == state
    with pytest.raises(Sam2rtError, match="set_image_batch"):
        p.predict_batch(point_coords_batch=[[[80, 60]]], point_labels_batch=[[1]])
    with pytest.raises(ValueError, match="read-only"):
        p.get_image_embedding()[...] = 0
    after = p.predict(**good)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_batch_mode_errors_keep_state(exported_tiny_256) -> None:
    p = ImagePredictor(exported_tiny_256)
    rng = np.random.default_rng(1)
    rgbs = [rng.integers(0, 256, (100, 90, 3), dtype=np.uint8), rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)]
    with pytest.raises(Sam2rtError, match="list"):
        p.set_image_batch(rgbs[0])
    p.set_image_batch(rgbs)
    state = _state(p)
    assert p.get_image_embedding().shape == (2, 256, SIZE // 16, SIZE // 16)
    with pytest.raises(Sam2rtError, match="predict_batch"):
        p.predict(point_coords=[[1, 1]], point_labels=[1])
    with pytest.raises(Sam2rtError, match="one entry per image"):
        p.predict_batch(point_coords_batch=[[[10, 10]]], point_labels_batch=[[1]])
    with pytest.raises(Sam2rtError, match="outside"):  # image 1 is only 80 px wide: checked before image 0 runs
        p.predict_batch(point_coords_batch=[[[85, 10]], [[85, 10]]], point_labels_batch=[[1], [1]])
    with pytest.raises(Sam2rtError, match="RGB image"):
        p.set_image_batch([rgbs[0], rgbs[1].astype(np.float64)])
    assert _state(p) == state
    masks, ious, low = p.predict_batch(box_batch=[[0, 0, 50, 50], [10, 10, 40, 40]], multimask_output=False)
    assert [m.shape for m in masks] == [(1, 100, 90), (1, 60, 80)] and [i.shape for i in ious] == [(1,), (1,)]
    p.reset_predictor()
    assert _state(p) == (False, False, None, None)
