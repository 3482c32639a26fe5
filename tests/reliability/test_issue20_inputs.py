"""Issue 20, inputs and newcomer friction: truncated MP4 (6), mixed frame folders and "².jpg" (7), one-frame
videos (8), a clone named sam2rt in the current folder (13), random weights said once (14), messages (15)."""

from __future__ import annotations

import argparse
import os
import re
import struct
import subprocess
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from sam2rt.cli import build_parser, main
from sam2rt.errors import Sam2rtError
from sam2rt.prompts_file import load_prompts, prompts_from_flags
from sam2rt.runtime.frames import open_frames

REPO = Path(__file__).resolve().parents[2]


def _lines(err: str) -> list[str]:
    return [line for line in err.replace("\r", "\n").splitlines() if line.strip()]


def _one_error_line(err: str) -> str:
    lines = _lines(err)
    assert lines and lines[-1].startswith("sam2rt: error: ") and "Traceback" not in err, err
    assert sum(line.startswith("sam2rt: error: ") for line in lines) == 1, err
    return lines[-1]


def _write_mp4(path: Path, count: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(count):
        frame = np.full((48, 64, 3), 20, np.uint8)
        frame[10:30, 5 + i:25 + i] = 220
        writer.write(frame)
    writer.release()


def _boxes(buf: bytes | bytearray, start: int, end: int):
    """(type, offset, size) of the MP4 boxes in buf[start:end]."""
    i = start
    while i + 8 <= end:
        size, kind = struct.unpack(">I4s", buf[i:i + 8])
        yield kind.decode("latin1"), i, size
        i += size


def _shift_chunk_offsets(moov: bytearray, start: int, end: int, delta: int) -> None:
    for kind, i, size in _boxes(moov, start, end):
        if kind in ("trak", "mdia", "minf", "stbl"):
            _shift_chunk_offsets(moov, i + 8, i + size, delta)
        elif kind == "stco":
            for k in range(struct.unpack(">I", moov[i + 12:i + 16])[0]):
                o = i + 16 + 4 * k
                moov[o:o + 4] = struct.pack(">I", struct.unpack(">I", moov[o:o + 4])[0] + delta)


def truncated_mp4(tmp_path: Path, claimed: int = 12, keep: float = 0.3) -> Path:
    """An MP4 whose index (moov, moved to the front) lists ``claimed`` frames but whose data stops after about
    ``keep`` of them, like a download cut short."""
    full = tmp_path / "full.mp4"
    _write_mp4(full, claimed)
    buf = bytearray(full.read_bytes())
    top = {kind: (i, size) for kind, i, size in _boxes(buf, 0, len(buf))}
    (mi, ms), (di, ds) = top["moov"], top["mdat"]
    moov = bytearray(buf[mi:mi + ms])
    _shift_chunk_offsets(moov, 8, len(moov), ms)
    out = tmp_path / "cut.mp4"
    out.write_bytes(bytes(buf[:di]) + bytes(moov) + bytes(buf[di:di + 8 + int((ds - 8) * keep)]))
    full.unlink()
    return out


# --------------------------------------------------------------------------- 6: truncated MP4


def test_item06_truncated_mp4_warns_and_names_the_failing_frame(exported_tiny_256: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    video = truncated_mp4(tmp_path)
    with pytest.warns(UserWarning, match=r"says 12 frames but only (\d+) decode \(frame \1 fails\)"):
        frames = open_frames(video)
    assert 1 <= len(frames) < 12
    decoded = len(frames)
    code = main(["track", "--model", str(exported_tiny_256), "--video", str(video), "--point", "15,20",
                 "--out", str(tmp_path / "o.mp4")])
    err = capsys.readouterr()
    assert code == 0, err.err
    assert f"sam2rt: warning: {video}: the container says 12 frames but only {decoded} decode" in err.err
    assert f"frames: {decoded} " in err.out
    code = main(["camera", "--model", str(exported_tiny_256), "--source", str(video), "--point", "15,20",
                 "--out", str(tmp_path / "cam.mp4")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert re.search(rf"says 12 frames but only {decoded} decode \(frame {decoded} fails\)", err), err


# --------------------------------------------------------------------------- 7: frame folders


def test_item07_mixed_jpeg_png_folder_is_refused(exported_tiny_256: Path, frames: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(frames / "00004.png")
    with pytest.raises(Sam2rtError, match=r"mixes JPEG frames with 1 other image file\(s\) \(\['00004.png'\]\)"):
        open_frames(frames)
    code = main(["track", "--model", str(exported_tiny_256), "--video", str(frames), "--point", "1,1",
                 "--out", str(tmp_path / "o.mp4")])
    assert code == 2 and "mixes JPEG frames" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("name", ["².jpg", "٣.jpg", "1².jpg"])
def test_item07_non_ascii_digit_names_are_one_error(name: str, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "00000.jpg")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / name, format="JPEG")
    with pytest.raises(Sam2rtError, match="digits 0-9"):
        open_frames(folder)


# --------------------------------------------------------------------------- 8: one frame


def test_item08_one_frame_video_and_single_image(exported_tiny_256: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    one = tmp_path / "one.mp4"
    _write_mp4(one, 1)
    image = tmp_path / "still.png"
    Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(image)
    for video in (one, image):
        frames = open_frames(video)
        assert len(frames) == 1 and frames[0].shape == (48, 64, 3)
        code = main(["track", "--model", str(exported_tiny_256), "--video", str(video), "--point", "15,20",
                     "--out", str(tmp_path / f"{video.stem}_o.mp4")])
        out = capsys.readouterr()
        assert code == 0 and "frames: 1 " in out.out, out.err


# --------------------------------------------------------------------------- 13: a clone named sam2rt


def test_item13_clone_named_sam2rt_in_the_current_folder(tmp_path: Path) -> None:
    (tmp_path / "sam2rt").symlink_to(REPO, target_is_directory=True)  # `git clone ... sam2rt`, then run from here
    script = "import sam2rt; print(sam2rt.VideoPredictor.__name__, sam2rt.__file__)"
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("VideoPredictor "), done.stderr
    bare = subprocess.run([sys.executable, "-S", "-c", "import sam2rt"], cwd=tmp_path, capture_output=True,
                          text=True)  # -S: no site-packages, so no installed sam2rt
    assert bare.returncode == 1 and "make install" in bare.stderr and "run your script from another folder" in bare.stderr


# --------------------------------------------------------------------------- 14: random weights


def test_item14_random_weights_are_said_once(exported_tiny_256: Path, model_copy: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from sam2rt.cli.random_weights import say_random_weights
    from sam2rt.manifest import load_manifest

    image = tmp_path / "in.png"
    Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(image)
    runs = {"segment": ["segment", "--model", str(exported_tiny_256), "--image", str(image), "--point", "9,9",
                        "--out", str(tmp_path / "m.png")],
            "track": ["track", "--model", str(exported_tiny_256), "--video", str(image), "--point", "9,9",
                      "--out", str(tmp_path / "o.mp4")]}
    for name, argv in runs.items():
        assert main(argv) == 0, name
        assert capsys.readouterr().err.count("RANDOM WEIGHTS") == 1, name

    def export_model(cfg) -> Path:  # `export --random-weights` (the real export is tested in tests/export)
        import shutil

        shutil.copytree(exported_tiny_256, cfg.out)
        return cfg.out / "manifest.json"

    fake = types.ModuleType("sam2rt.export.exporter")
    fake.ExportConfig = lambda **kw: argparse.Namespace(**kw)
    fake.export_model = export_model
    monkeypatch.setitem(sys.modules, "sam2rt.export.exporter", fake)
    assert main(["export", "--model", "sam2.1_hiera_tiny", "--random-weights", "--image-size", "256",
                 "--out", str(tmp_path / "exported")]) == 0
    assert capsys.readouterr().err.count("RANDOM WEIGHTS") == 1
    assert load_manifest(exported_tiny_256).random_weights  # what verify and bench call say_random_weights with
    manifest = json.loads((model_copy / "manifest.json").read_text())
    manifest["source"] = {"checkpoint_sha256": "ab" * 32, "random_seed": None}
    (model_copy / "manifest.json").write_text(json.dumps(manifest))
    say_random_weights(model_copy)  # a checkpoint export: nothing to say
    assert not load_manifest(model_copy).random_weights and capsys.readouterr().err == ""


# --------------------------------------------------------------------------- 15: messages


def test_item15_messages(tmp_path: Path, model_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(Sam2rtError) as error:  # the --box example is itself a valid box
        prompts_from_flags([], "100,100")
    example = re.search(r"e\.g\. --box (\S+)", str(error.value)).group(1)
    assert prompts_from_flags([], example)[0].box is not None
    track = build_parser()._subparsers._group_actions[0].choices["track"]
    assert "TensorRT" in track.description and "on ONNX Runtime and" not in track.description
    (tmp_path / "prompts").mkdir()
    with pytest.raises(Sam2rtError, match="is a folder"):
        load_prompts(tmp_path / "prompts")
    (model_copy / "constants.npz").write_text("a text file\n")
    from sam2rt.integrity import load_constants
    from sam2rt.manifest import load_manifest

    with pytest.raises(Sam2rtError, match="not an .npz archive"):
        load_constants(load_manifest(model_copy))
    bench = build_parser()._subparsers._group_actions[0].choices["bench"]
    assert "--video VIDEO [" in bench.format_usage() and "[--video" not in bench.format_usage()


@pytest.mark.parametrize("argv", [["camera", "--point"], ["track", "--model", "m", "--video", "v", "--out", "o.mp4",
                                                           "--point", "-5,10"]])
def test_item15_argparse_errors_are_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(_lines(err)) == 1 and err.startswith("sam2rt: error: "), err
    assert "usage:" not in err and f"sam2rt {argv[0]} --help" in err
    if "-5,10" in argv:
        assert "--point=-5,10" in err


def test_item15_own_image_as_checkpoint_is_not_told_to_delete_it(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from sam2rt.export.checkpoints import _read_checkpoint

    photo = tmp_path / "holiday.jpg"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    with pytest.raises(Sam2rtError) as error:
        _read_checkpoint(photo, "sam2.1_hiera_tiny")
    assert "delete it" not in str(error.value) and "pass the official .pt file" in str(error.value)
    assert photo.is_file()


def test_item15_export_rejects_bad_arguments_before_torch(tmp_path: Path) -> None:
    code = ("import sys; from sam2rt.cli import main; "
            "rc = main(['export', '--model', 'sam2.1_hiera_tiny', '--random-weights', '--image-size', '100', "
            "'--out', sys.argv[1]]); assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m")], capture_output=True, text=True)
    assert done.returncode == 2 and "image size 100" in done.stderr, done.stderr
    assert not (tmp_path / "m").exists()


def test_item15_readme_and_makefile() -> None:
    readme = (REPO / "README.md").read_text()
    contract = (REPO / "docs" / "contract.md").read_text()
    if "masks/cup.png" in contract:  # the README's masks folder must not be the example prompt's folder
        assert not re.search(r"--masks-dir masks(\s|$)", readme)
    make = (REPO / "Makefile").read_text()
    assert make.index("install -e") < make.index("install --no-deps sam2"), "sam2 last: no resolver error"
