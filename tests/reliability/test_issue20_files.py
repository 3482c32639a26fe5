"""Issue 20, files destroyed or left behind: segment's mask writes (1), model folders replaced by convert/export
(2), empty folders and stale hidden folders (3), two writers of one --masks-dir and names over 255 bytes (12).
Each failure: exit 2, one line, every pre-existing file byte-identical."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam2rt.cli import main
from sam2rt.staging import claimed


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err.strip()


def _one_error_line(err: str) -> str:
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("sam2rt: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in err, err
    return errors[0]


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
    return path


def _segment(model: Path, image: Path, out: Path, *extra: str) -> list[str]:
    return ["segment", "--model", str(model), "--image", str(image), "--point", "30,20", "--out", str(out), *extra]


_REAL_SAVE = Image.Image.save


def _disk_full_after(n: int):
    """Image.save that writes n files, then writes half a file and fails with ENOSPC, as a full disk does."""
    calls = {"n": 0}

    def save(self: Image.Image, fp, *args, **kwargs) -> None:
        calls["n"] += 1
        if calls["n"] <= n:
            return _REAL_SAVE(self, fp, *args, **kwargs)
        Path(fp).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        raise OSError(errno.ENOSPC, "No space left on device")

    return save


# --------------------------------------------------------------------------- 1: segment


def test_item01_segment_disk_full_keeps_the_earlier_mask(exported_tiny_256: Path, image: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mask.png"
    out.write_bytes(b"the user's earlier mask")
    before = _files(tmp_path)
    monkeypatch.setattr(Image.Image, "save", _disk_full_after(0))
    code, err = _run(_segment(exported_tiny_256, image, out), capsys)
    assert code == 2 and "No space left" in _one_error_line(err)
    assert _files(tmp_path) == before  # the earlier mask untouched, no temporary file left


def test_item01_segment_all_masks_is_all_or_nothing(exported_tiny_256: Path, image: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(3):
        (tmp_path / f"keep_{i}.png").write_bytes(f"earlier mask {i}".encode())
    before = _files(tmp_path)
    monkeypatch.setattr(Image.Image, "save", _disk_full_after(1))  # keep_0 written, keep_1 fails
    code, err = _run(_segment(exported_tiny_256, image, tmp_path / "keep.png", "--all-masks"), capsys)
    assert code == 2 and "keep_1.png" in _one_error_line(err)
    assert _files(tmp_path) == before
    monkeypatch.setattr(Image.Image, "save", _REAL_SAVE)  # a healthy disk: all three replaced
    code, err = _run(_segment(exported_tiny_256, image, tmp_path / "keep.png", "--all-masks"), capsys)
    assert code == 0, err
    for i in range(3):
        with Image.open(tmp_path / f"keep_{i}.png") as mask:
            assert mask.size == (64, 48) and set(np.unique(np.asarray(mask))) <= {0, 255}
        assert (tmp_path / f"keep_{i}.png").stat().st_mode & 0o077  # not mkstemp's private 0600


def test_item01_segment_out_equal_to_image_is_refused(image: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    candidate = tmp_path / "mask_1.png"  # --all-masks writes mask_0..2.png: the image may be one of them
    candidate.write_bytes(image.read_bytes())
    before = _files(tmp_path)
    cases = [(image, image), (image, tmp_path / "." / image.name), (candidate, tmp_path / "mask.png")]
    for source, out in cases:
        extra = ["--all-masks"] if source == candidate else []
        code, err = _run(_segment(tmp_path / "no_model", source, out, *extra), capsys)
        assert code == 2 and "is the input image" in _one_error_line(err), (source, out)
    assert _files(tmp_path) == before


# --------------------------------------------------------------------------- 2: convert / export --out


def test_item02_convert_and_export_refuse_an_existing_model(exported_tiny_256: Path, model_copy: Path,
                                                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _files(model_copy)
    code, err = _run(["convert", str(exported_tiny_256), "--precision", "fp16", "--out", str(model_copy)], capsys)
    assert code == 2 and "--force" in _one_error_line(err)
    code, err = _run(["export", "--model", "sam2.1_hiera_tiny", "--random-weights", "--image-size", "256",
                      "--out", str(model_copy)], capsys)
    assert code == 2 and "--force" in _one_error_line(err)
    for out in (exported_tiny_256, exported_tiny_256 / ".." / exported_tiny_256.name):  # never the source
        code, err = _run(["convert", str(exported_tiny_256), "--precision", "fp16", "--out", str(out), "--force"],
                         capsys)
        assert code == 2 and "source model folder" in _one_error_line(err)
    assert _files(model_copy) == before


def test_item02_export_refuses_before_importing_torch(tmp_path: Path) -> None:
    """A bad request fails in well under the 10-20 s torch takes to import (checked: torch not loaded)."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "manifest.json").write_text("{}")
    code = ("import sys; from sam2rt.cli import main; "
            "rc = main(['export', '--model', 'sam2.1_hiera_tiny', '--random-weights', '--out', sys.argv[1]]); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m")], capture_output=True, text=True)
    assert done.returncode == 2 and "--force" in done.stderr, done.stderr


# --------------------------------------------------------------------------- 3: interrupted export, stale folders


def test_item03_interrupted_export_leaves_no_empty_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    def export_model(cfg) -> Path:  # as the exporter does: the folder is made, then the long work is interrupted
        from sam2rt.manifest import make_output_dir

        make_output_dir(cfg.out)
        raise KeyboardInterrupt

    fake = types.ModuleType("sam2rt.export.exporter")
    fake.ExportConfig = types.SimpleNamespace  # any fields the command passes (the real one imports torch)
    fake.export_model = export_model
    monkeypatch.setitem(sys.modules, "sam2rt.export.exporter", fake)
    code, err = _run(["export", "--model", "sam2.1_hiera_tiny", "--random-weights", "--image-size", "256",
                      "--out", str(tmp_path / "new" / "model")], capsys)
    assert code == 130 and "interrupted" in err
    assert list(tmp_path.iterdir()) == []


def _dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def test_item03_stale_hidden_folders_of_dead_processes_are_cleaned(exported_tiny_256: Path, frames: Path,
                                                                   tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dead, alive = _dead_pid(), os.getpid()
    stale = [out_dir / f".sam2rt-track-{dead}-abc", out_dir / f".sam2rt-masks-{dead}-def"]
    for folder in stale:
        (folder / "masks" / "1").mkdir(parents=True)
        (folder / "masks" / "1" / "00000.png").write_bytes(b"left by a killed run")
    live = out_dir / f".sam2rt-track-{alive}-running"  # a run in progress (this process) is left alone
    live.mkdir()
    other = out_dir / ".sam2rt-track-notapid"
    other.mkdir()
    code, err = _run(["track", "--model", str(exported_tiny_256), "--video", str(frames), "--point", "30,20",
                      "--out", str(out_dir / "o.mp4"), "--masks-dir", str(out_dir / "masks")], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == sorted([live.name, other.name, "masks", "o.mp4"])


# --------------------------------------------------------------------------- 12: one --masks-dir, long names


def test_item12_second_writer_of_a_masks_dir_is_refused_at_once(frames: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    masks = tmp_path / "masks"
    holder = ("import sys; from pathlib import Path; from sam2rt.staging import claimed\n"
              "with claimed([(Path(sys.argv[1]), '--masks-dir')]):\n"
              "    print('claimed', flush=True); sys.stdin.read()")
    first = subprocess.Popen([sys.executable, "-c", holder, str(masks)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)  # the first process, still running
    try:
        assert first.stdout.readline().strip() == "claimed"
        code, err = _run(["track", "--model", str(tmp_path / "no_model"), "--video", str(frames), "--point", "1,1",
                          "--out", str(tmp_path / "o.mp4"), "--masks-dir", str(masks)], capsys)
    finally:
        first.communicate(timeout=30)
    assert code == 2 and "another sam2rt process" in _one_error_line(err)
    assert not masks.exists()
    with claimed([(masks, "--masks-dir")]):  # released when that process ended
        pass


def test_item12_masks_dir_filled_during_the_run_is_an_error(exported_tiny_256: Path, frames: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from sam2rt.cli import track

    masks = tmp_path / "masks"
    masks.mkdir()
    real = track.propagate

    def propagate(*args, **kwargs):  # another program writes into the (checked empty) folder meanwhile
        (masks / "theirs.txt").write_text("not ours")
        return real(*args, **kwargs)

    monkeypatch.setattr(track, "propagate", propagate)
    code, err = _run(["track", "--model", str(exported_tiny_256), "--video", str(frames), "--point", "30,20",
                      "--out", str(tmp_path / "o.mp4"), "--masks-dir", str(masks)], capsys)
    assert code == 2 and "no longer empty" in _one_error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "masks"]
    assert [p.name for p in masks.iterdir()] == ["theirs.txt"]


@pytest.mark.parametrize("command", ["track", "segment", "track --masks-dir"])
def test_item12_names_over_255_bytes_are_one_error(command: str, frames: Path, image: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    long = "é" * 130  # 260 bytes in UTF-8
    model = str(tmp_path / "no_model")
    argv = {"track": ["track", "--model", model, "--video", str(frames), "--point", "1,1",
                      "--out", str(tmp_path / f"{long}.mp4")],
            "segment": _segment(tmp_path / "no_model", image, tmp_path / f"{long}.png"),
            "track --masks-dir": ["track", "--model", model, "--video", str(frames), "--point", "1,1",
                                  "--out", str(tmp_path / "o.mp4"), "--masks-dir", str(tmp_path / long / "m")]}[command]
    before = _files(tmp_path)
    code, err = _run(argv, capsys)
    assert code == 2 and "at most 255 bytes" in _one_error_line(err)
    assert _files(tmp_path) == before
