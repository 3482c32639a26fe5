"""``sam2rt segment`` end to end on the exported tiny model: the PNG equals the Python API's mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam2rt.cli import main
from sam2rt.runtime.image_predictor import ImagePredictor


@pytest.fixture(scope="module")
def image(shared_data: Path) -> Path:
    return shared_data / "images" / "truck.jpg"


def _png(path: Path) -> np.ndarray:
    arr = np.asarray(Image.open(path))
    assert set(np.unique(arr)) <= {0, 255}
    return arr > 0


def test_segment_writes_the_api_mask(exported_tiny_256: Path, image: Path, tmp_path: Path, capsys) -> None:
    rgb = np.array(Image.open(image).convert("RGB"))
    api = ImagePredictor(exported_tiny_256)
    api.set_image(rgb)
    base = ["segment", "--model", str(exported_tiny_256), "--image", str(image)]

    # one click: 3 candidates, the best predicted IoU is written
    assert main([*base, "--point", "500,375", "--out", str(tmp_path / "click.png")]) == 0
    masks, scores, _ = api.predict(point_coords=[[500, 375]], point_labels=[1])
    np.testing.assert_array_equal(_png(tmp_path / "click.png"), masks[scores.argmax()] > 0)

    # box + a negative click: one mask
    assert main([*base, "--box", "75,275,1725,850", "--point", "575,750,0", "--out", str(tmp_path / "box.png")]) == 0
    masks, _, _ = api.predict(point_coords=[[575, 750]], point_labels=[0], box=[75, 275, 1725, 850],
                              multimask_output=False)
    np.testing.assert_array_equal(_png(tmp_path / "box.png"), masks[0] > 0)

    assert main([*base, "--point", "500,375", "--out", str(tmp_path / "all" / "m.png"), "--all-masks"]) == 0
    masks, _, _ = api.predict(point_coords=[[500, 375]], point_labels=[1])
    for i in range(3):
        np.testing.assert_array_equal(_png(tmp_path / "all" / f"m_{i}.png"), masks[i] > 0)
    assert "predicted IoU" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    ([], "no prompt"),
    (["--point", "500"], "--point"),
    (["--point", "500,375,2"], "LABEL"),
    (["--box", "1,2,3"], "--box"),
    (["--box", "75,275,1725,8500"], "outside the 1800x1200 image"),
    (["--point", "1,1", "--image", "missing.jpg"], "cannot read"),
    (["--point", "1,1", "--out", "mask.jpg"], ".png"),
    (["--point", "1,1", "--model", "no_model_here"], "manifest.json"),
])
def test_segment_errors(exported_tiny_256: Path, image: Path, tmp_path: Path, capsys, args, message) -> None:
    argv = ["segment", "--model", str(exported_tiny_256), "--image", str(image), "--out", str(tmp_path / "m.png")]
    for flag in ("--image", "--out", "--model"):  # a later flag overrides the default above
        if flag in args:
            value = args[args.index(flag) + 1]
            argv[argv.index(flag) + 1] = str(tmp_path / value)
            args = [a for i, a in enumerate(args) if a != flag and (i == 0 or args[i - 1] != flag)]
    assert main([*argv, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
