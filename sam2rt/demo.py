"""``python -m sam2rt.demo --out demo_out``: the whole pipeline on a fresh machine, in a few minutes on CPU.

1. fetch the official ``sam2.1_hiera_tiny`` checkpoint; offline, continue with seeded random weights and
   say so everywhere (console, overlay caption, summary.json): their masks are not meaningful;
2. export it at image size 512 to ``OUT/model_<name>_<size>_<weights>`` (skipped when a manifest with the
   same source is already there);
3. make a synthetic clip itself (no fetched data): a coloured disc moving along a curve over a textured
   background, written as JPEG frames to ``OUT/clip``;
4. track the disc from one click on its centre on frame 0 with ``VideoPredictor`` (ONNX Runtime, CPU);
5. write ``OUT/overlay.mp4``, ``OUT/masks/1/*.png`` and ``OUT/summary.json``; print FPS and the IoU
   against the disc's true position.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from sam2rt.errors import Sam2rtError

MODEL = "sam2.1_hiera_tiny"
IMAGE_SIZE = 512
RANDOM_SEED = 0
DISC_COLOUR = (235, 110, 30)  # RGB orange


# --------------------------------------------------------------------------- synthetic clip


@dataclass(frozen=True)
class Clip:
    """A generated clip: its JPEG folder, frame size and the disc's true centre (x, y) and radius per frame."""

    folder: Path
    width: int
    height: int
    centres: tuple[tuple[float, float], ...]
    radius: float

    def disc_mask(self, frame_idx: int) -> np.ndarray:
        """(H, W) bool: the pixels of the disc on ``frame_idx``."""
        x, y = self.centres[frame_idx]
        yy, xx = np.mgrid[0:self.height, 0:self.width]
        return (xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= self.radius ** 2


def disc_path(num_frames: int, width: int, height: int) -> list[tuple[float, float]]:
    """A smooth figure-of-eight through the frame: the disc starts in the middle and loops left and right."""
    centres = []
    for i in range(num_frames):
        t = 2 * math.pi * i / max(num_frames, 1)
        centres.append((width / 2 + 0.30 * width * math.sin(t), height / 2 + 0.22 * height * math.sin(2 * t)))
    return centres


def textured_background(width: int, height: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8: soft colour gradients, stripes and blurred noise, so the disc is not on a flat colour."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([90 + 50 * np.sin(xx / 53.0 + 0.7 * np.cos(yy / 71.0)),
                     110 + 40 * np.cos(yy / 37.0 - xx / 97.0),
                     120 + 45 * np.sin((xx + yy) / 61.0)], axis=-1)  # (H, W, 3)
    noise = cv2.GaussianBlur(rng.normal(0, 40, (height, width, 3)).astype(np.float32), (0, 0), 2.0)
    image = np.clip(base + noise, 0, 255).astype(np.uint8)
    for _ in range(12):  # static grey blocks: distractors with edges
        x0, y0 = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        level = int(rng.integers(40, 200))
        cv2.rectangle(image, (x0, y0), (x0 + int(rng.integers(20, 90)), y0 + int(rng.integers(20, 60))),
                      (level, level, level), thickness=-1)
    return image


def draw_disc(image: np.ndarray, centre: tuple[float, float], radius: float) -> np.ndarray:
    """A copy of ``image`` with a shaded disc (a highlight toward the top-left) drawn at ``centre``."""
    out = image.copy()
    h, w = out.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    dx, dy = xx + 0.5 - centre[0], yy + 0.5 - centre[1]
    inside = dx ** 2 + dy ** 2 <= radius ** 2
    shade = 1.0 + 0.25 * np.clip(-(dx + dy) / (2 * radius), -1, 1)  # (H, W)
    colour = np.asarray(DISC_COLOUR, np.float32)[None, :] * shade[inside][:, None]
    out[inside] = np.clip(colour, 0, 255).astype(np.uint8)
    return out


def make_clip(folder: str | Path, num_frames: int = 48, width: int = 640, height: int = 360,
              seed: int = 0) -> Clip:
    """Write a synthetic clip as ``folder/00000.jpg ...`` (replacing the folder) and return its ground truth.

    The frames are written into a temporary folder beside ``folder`` and moved in at the end.
    """
    if num_frames < 2 or width < 64 or height < 64:
        raise Sam2rtError(f"a clip needs at least 2 frames of 64x64 pixels, got {num_frames} of {width}x{height}")
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    background = textured_background(width, height, seed)
    centres = disc_path(num_frames, width, height)
    radius = 0.09 * height
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".clip-"))
    try:
        for i, centre in enumerate(centres):
            bgr = cv2.cvtColor(draw_disc(background, centre, radius), cv2.COLOR_RGB2BGR)
            if not cv2.imwrite(str(tmp / f"{i:05d}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise Sam2rtError(f"cannot write JPEG frames into {folder.parent}; check that it is writable")
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Clip(folder, width, height, tuple(centres), radius)


# --------------------------------------------------------------------------- weights and model


@dataclass(frozen=True)
class Weights:
    """Where the demo's weights come from: the official checkpoint, or seeded random weights (offline)."""

    checkpoint: Path | None
    random_seed: int | None

    @property
    def official(self) -> bool:
        return self.checkpoint is not None

    @property
    def label(self) -> str:
        if self.official:
            return f"{MODEL} official weights"
        return f"RANDOM WEIGHTS (seed {self.random_seed}, offline) - masks are NOT meaningful"


def fetch_weights(force_random: bool) -> Weights:
    """The official checkpoint if it can be downloaded (or is cached), else seeded random weights."""
    if force_random:
        print("demo: --random-weights given; using seeded random weights (masks will not be meaningful)")
        return Weights(None, RANDOM_SEED)
    from sam2rt.export.download import download

    try:
        return Weights(download(MODEL, timeout=20), None)
    except Sam2rtError as e:
        print(f"demo: the real {MODEL} weights are unreachable:\n  {e}")
        print("demo: CONTINUING WITH SEEDED RANDOM WEIGHTS. Everything runs as with the real model (export, "
              "verification, tracking, timing), but the masks are NOT meaningful. The overlay caption and "
              "summary.json say so.")
        return Weights(None, RANDOM_SEED)


def _same_source(model_dir: Path, weights: Weights) -> bool:
    """True when ``model_dir`` holds a manifest of this model, size and weight source."""
    from sam2rt.export.checkpoints import sha256_file
    from sam2rt.manifest import load_manifest

    try:
        manifest = load_manifest(model_dir)
    except Sam2rtError:
        return False
    source = manifest.raw.get("source", {})
    digest = sha256_file(weights.checkpoint) if weights.official else None
    return (manifest.model_name == MODEL and manifest.image_size == IMAGE_SIZE
            and source.get("checkpoint_sha256") == digest and source.get("random_seed") == weights.random_seed)


def export_cached(out: Path, weights: Weights) -> Path:
    """Export the model (verified against PyTorch) into ``out/model_...``, unless it is already there."""
    tag = "official" if weights.official else f"random{weights.random_seed}"
    model_dir = out / f"model_{MODEL}_{IMAGE_SIZE}_{tag}"
    if _same_source(model_dir, weights):
        print(f"demo: model already exported in {model_dir} (same source); skipping the export")
        return model_dir
    try:
        from sam2rt.export.exporter import ExportConfig, export_model
    except ImportError as e:
        raise Sam2rtError(f"exporting needs the export extra ({e.name} is missing); run `make demo`, which "
                          "installs it, or `pip install -e .[export]`") from None
    print(f"demo: exporting {MODEL} at image size {IMAGE_SIZE} to {model_dir} (four graphs, verified)")
    export_model(ExportConfig(model=MODEL, out=model_dir, image_size=IMAGE_SIZE, checkpoint=weights.checkpoint,
                              random_seed=weights.random_seed, verify=True))
    return model_dir


# --------------------------------------------------------------------------- tracking and report


def mean_iou(clip: Clip, masks_dir: Path) -> float:
    """Mean IoU of the tracked masks (``masks_dir/<frame>.png``) with the disc's true position."""
    ious = []
    for i in range(len(clip.centres)):
        pred = cv2.imread(str(masks_dir / f"{i:05d}.png"), cv2.IMREAD_GRAYSCALE) > 0
        truth = clip.disc_mask(i)
        ious.append((pred & truth).sum() / max(int((pred | truth).sum()), 1))
    return float(np.mean(ious))


def run_demo(out: Path, num_frames: int = 48, force_random: bool = False, threads: int = 0) -> dict:
    """Steps 1-5 of the module docstring; returns the summary also written to ``out/summary.json``."""
    from sam2rt.cli.track import TrackConfig, print_summary, track_video
    from sam2rt.prompts_file import Prompt

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    weights = fetch_weights(force_random)
    model_dir = export_cached(out, weights)
    t_export = time.perf_counter() - t0
    clip = make_clip(out / "clip", num_frames=num_frames)
    print(f"demo: wrote a synthetic clip of {num_frames} frames {clip.width}x{clip.height} to {clip.folder}")
    x, y = clip.centres[0]
    masks_dir = out / "masks"
    shutil.rmtree(masks_dir, ignore_errors=True)  # the demo's own output from an earlier run
    prompt = Prompt(frame=0, obj_id=1, points=((x, y),), labels=(1,), where="demo click")
    print(f"demo: tracking the disc from a click at ({x:.0f}, {y:.0f}) on frame 0")
    result = track_video(TrackConfig(model=model_dir, video=clip.folder, prompts=(prompt,),
                                     out=out / "overlay.mp4", masks_dir=masks_dir, threads=threads,
                                     caption=f"sam2rt demo | {weights.label}"))
    print_summary(result)
    summary = {"weights": weights.label, "official_weights": weights.official, "model_dir": str(model_dir),
               "image_size": IMAGE_SIZE, "frames": result.frames, "propagate_fps": round(result.propagate_fps, 3),
               "mean_iou_vs_truth": round(mean_iou(clip, masks_dir / "1"), 4),
               "export_or_cache_s": round(t_export, 1), "total_s": round(time.perf_counter() - t0, 1),
               "overlay": str(result.out), "masks": str(masks_dir), "clip": str(clip.folder)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _print_report(summary)
    return summary


def _print_report(s: dict) -> None:
    print("\n========== sam2rt demo ==========")
    print(f"weights:        {s['weights']}")
    print(f"tracking speed: {s['propagate_fps']:.2f} FPS ({s['frames']} frames @ {s['image_size']} px, "
          "ONNX Runtime CPU)")
    iou_note = "" if s["official_weights"] else "  (random weights: expected to be low)"
    print(f"mean IoU with the true disc: {s['mean_iou_vs_truth']:.3f}{iou_note}")
    print(f"total time:     {s['total_s']:.1f} s (export or cache check {s['export_or_cache_s']:.1f} s)")
    print(f"overlay video:  {s['overlay']}")
    print(f"masks:          {s['masks']}/1/<frame>.png")
    print(f"clip frames:    {s['clip']}")
    print(f"model:          {s['model_dir']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sam2rt.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    parser.add_argument("--frames", type=int, default=48, help="frames in the synthetic clip (default 48)")
    parser.add_argument("--random-weights", action="store_true", help="skip the download; seeded random weights")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: its default)")
    args = parser.parse_args(argv)
    from sam2rt.cli import guarded

    def run() -> int:
        run_demo(args.out, args.frames, args.random_weights, args.threads)
        return 0

    return guarded("sam2rt demo", run)


if __name__ == "__main__":
    sys.exit(main())
