"""``sam2rt track``: segment objects through a video from a prompts file (or --point/--box), on any backend.

``track_video`` is the Python entry point (the demo uses it too): a ``VideoPredictor``, the prompts, forward
propagation from the first prompted frame (and reverse propagation back to frame 0 when that frame is later),
then an overlay video and optional per-object PNG masks. Everything is written into temporary files beside
the outputs and moved into place at the end, so a failure leaves nothing half-written.

numpy, OpenCV, tqdm and the runtime are imported inside the functions that use them, so registering the
subcommand keeps ``sam2rt --help`` instant.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from sam2rt.cli.overlay import write_overlay
from sam2rt.cli.random_weights import say_random_weights
from sam2rt.errors import Sam2rtError

if TYPE_CHECKING:
    import numpy as np

    from sam2rt.prompts_file import Prompt

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov")  # containers OpenCV writes with the mp4v codec
DEFAULT_FPS = 30.0


@dataclass(frozen=True)
class TrackConfig:
    """One ``sam2rt track`` run; the CLI flags map onto these fields.

    caption: text drawn on every overlay frame (the demo labels random weights with it).
    """

    model: Path
    video: Path
    prompts: tuple[Prompt, ...]
    out: Path
    masks_dir: Path | None = None
    backend: str = "ort"
    threads: int = 0
    caption: str | None = None
    progress: bool = True


@dataclass(frozen=True)
class TrackResult:
    """What a run did: frames in the video, object ids, timings (seconds) and the files written."""

    frames: int
    obj_ids: tuple[int, ...]
    propagated: int  # frames the predictor produced (the prompted frame counts once per direction)
    propagate_s: float  # time inside propagate_in_video only
    wall_s: float  # everything: model load, prompts, propagation, writing
    fps: float  # video frame rate used for the overlay
    out: Path
    masks_dir: Path | None

    @property
    def propagate_fps(self) -> float:
        return self.propagated / self.propagate_s if self.propagate_s > 0 else float("nan")


# --------------------------------------------------------------------------- checks


def check_outputs(out: Path, masks_dir: Path | None, video: Path) -> Path | None:
    """Raise before any work if an output path cannot be used; returns ``masks_dir`` with symlinks resolved
    (masks land where the link points and the link stays)."""
    from sam2rt.outputs import check_name_lengths, check_writable_dir, check_writable_file

    check_name_lengths(out, "--out")
    if masks_dir is not None:
        check_name_lengths(masks_dir, "--masks-dir")
    if out.suffix.lower() not in VIDEO_SUFFIXES:
        raise Sam2rtError(f"--out {out}: the overlay is an MPEG-4 video; use a name ending in .mp4")
    if out.is_dir():
        raise Sam2rtError(f"--out {out} is a folder; pass a file name such as {out / 'overlay.mp4'}")
    if video.exists() and out.exists() and out.resolve() == video.resolve():
        raise Sam2rtError(f"--out {out} is the input video; choose another file name")
    check_writable_file(out, "--out")
    if masks_dir is None:
        return None
    masks_dir = masks_dir.resolve() if masks_dir.is_symlink() else masks_dir
    if masks_dir.exists() and (not masks_dir.is_dir() or any(masks_dir.iterdir())):
        raise Sam2rtError(f"--masks-dir {masks_dir} exists and is not an empty folder; choose a new folder or "
                          "delete it first")
    out_abs, masks_abs = Path(os.path.abspath(out)), Path(os.path.abspath(masks_dir))
    if out_abs == masks_abs or masks_abs in out_abs.parents:
        raise Sam2rtError(f"--masks-dir {masks_dir} would hold --out {out}; choose a masks folder apart from "
                          "the overlay video")
    check_writable_dir(masks_dir, "--masks-dir")
    return masks_dir


def check_frame_size(width: int, height: int, video: Path) -> None:
    """The overlay's mp4v encoder needs frames of at least 2x2 pixels (checked before tracking)."""
    if width < 2 or height < 2:
        raise Sam2rtError(f"--video {video}: frames are {width}x{height} pixels; the overlay video needs at least "
                          "2x2. Track such frames with the Python API (VideoPredictor) instead")


def video_fps(video: Path) -> float:
    """The frame rate of a video file; DEFAULT_FPS for a JPEG folder or an unknown rate."""
    import cv2

    if not video.is_file():
        return DEFAULT_FPS
    capture = cv2.VideoCapture(str(video))
    fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
    capture.release()
    return float(fps) if math.isfinite(fps) and 1.0 <= fps <= 1000.0 else DEFAULT_FPS


# --------------------------------------------------------------------------- propagation


def _timed(iterator: Iterator[Any]) -> Iterator[tuple[Any, float]]:
    """Yield each item with the seconds spent producing it (so our own writes are not counted)."""
    while True:
        t0 = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            return
        yield item, time.perf_counter() - t0


def _save_masks(root: Path, frame_idx: int, obj_ids: Sequence[int], masks: np.ndarray) -> None:
    """masks (K,1,H,W) logits -> root/<obj_id>/<frame:05d>.png, 0/255."""
    import cv2
    import numpy as np

    for obj_id, logits in zip(obj_ids, masks):
        png = np.where(logits[0] > 0, 255, 0).astype(np.uint8)  # (H, W)
        path = root / str(obj_id) / f"{frame_idx:05d}.png"
        if not cv2.imwrite(str(path), png):
            raise Sam2rtError(f"cannot write {path}; check the disk space and permissions of {root.parent}")


def propagate(predictor: Any, state: dict[str, Any], start: int, mask_root: Path,
              progress: bool) -> tuple[int, float]:
    """Propagate forward from ``start`` (the first prompted frame), then back to frame 0 if ``start`` > 0,
    saving each frame's masks; returns (frames produced, seconds spent inside the predictor)."""
    from tqdm import tqdm

    for obj_id in state["obj_ids"]:
        (mask_root / str(obj_id)).mkdir(parents=True)
    passes = [(start, False)] + ([(start, True)] if start > 0 else [])  # forward, then back to frame 0
    total = state["num_frames"] - start + (start + 1 if start > 0 else 0)
    produced, seconds = 0, 0.0
    with tqdm(total=total, desc="track", unit="frame", disable=not progress) as bar:
        for first, reverse in passes:
            frames = predictor.propagate_in_video(state, start_frame_idx=first, reverse=reverse)
            for (frame_idx, ids, masks), dt in _timed(frames):
                _save_masks(mask_root, frame_idx, ids, masks)
                produced, seconds = produced + 1, seconds + dt
                bar.update(1)
    return produced, seconds


# --------------------------------------------------------------------------- files


def _commit(video_tmp: Path, out: Path, staged_masks: Path | None, masks_dir: Path | None) -> None:
    """Move the masks folder, then the overlay, into place; if the overlay cannot be moved, the masks go
    back where they were staged, so a failure leaves the outputs as they were before the run."""
    from sam2rt.outputs import replace

    existed = masks_dir is not None and masks_dir.is_dir()
    if staged_masks is not None and masks_dir is not None:
        if existed:
            try:
                masks_dir.rmdir()  # checked empty before the run
            except OSError as e:
                raise Sam2rtError(f"--masks-dir {masks_dir} is no longer empty ({e.strerror}): something else wrote "
                                  "there during the run; nothing was replaced. Choose a new folder") from None
        replace(staged_masks, masks_dir, "--masks-dir")
    try:
        replace(video_tmp, out, "--out")
    except Sam2rtError:
        if staged_masks is not None and masks_dir is not None:
            os.replace(masks_dir, staged_masks)
            if existed:
                masks_dir.mkdir()
        raise


# --------------------------------------------------------------------------- the run


def track_video(cfg: TrackConfig, predictor: Any | None = None) -> TrackResult:
    """Track ``cfg.prompts`` through ``cfg.video``; write the overlay (and masks); return counts and timings.

    predictor: a loaded ``VideoPredictor`` of ``cfg.model`` to reuse (one model for many videos, as the
    workers of ``sam2rt track-batch`` do); None loads one.
    """
    from sam2rt.staging import claimed

    t0 = time.perf_counter()
    if not cfg.prompts:
        raise Sam2rtError("no prompt: give at least one point, box or mask")
    masks_dir = check_outputs(cfg.out, cfg.masks_dir, cfg.video)
    cfg = replace(cfg, masks_dir=masks_dir)
    with claimed([(cfg.out, "--out")] + ([(masks_dir, "--masks-dir")] if masks_dir is not None else [])):
        return _track_claimed(cfg, t0, predictor)


def _track_claimed(cfg: TrackConfig, t0: float, predictor: Any | None) -> TrackResult:
    """``track_video`` once its outputs are checked and claimed against other sam2rt processes."""
    from tqdm import tqdm

    from sam2rt.prompts_file import apply_prompt
    from sam2rt.runtime.predictor import VideoPredictor

    if predictor is None:
        predictor = VideoPredictor(cfg.model, backend=cfg.backend, threads=cfg.threads, progress=False)
    state = predictor.init_state(str(cfg.video))
    try:
        check_frame_size(state["video_width"], state["video_height"], cfg.video)
        many = cfg.progress and len(cfg.prompts) >= 4  # each prompt runs the decoder: show progress on many
        for prompt in tqdm(cfg.prompts, desc="prompts", unit="prompt", disable=not many):
            apply_prompt(predictor, state, prompt)
        fps = video_fps(cfg.video)
        produced, seconds = _run_in_place(cfg, predictor, state, fps)
    finally:
        getattr(state["frames"], "close", lambda: None)()  # a video file's decoder
    return TrackResult(state["num_frames"], tuple(state["obj_ids"]), produced, seconds,
                       time.perf_counter() - t0, fps, cfg.out, cfg.masks_dir)


def _run_in_place(cfg: TrackConfig, predictor: Any, state: dict[str, Any], fps: float) -> tuple[int, float]:
    """``_run_staged`` with the outputs' missing parent folders created, and removed again on failure."""
    from sam2rt.outputs import make_parents, remove_empty

    created = make_parents(cfg.out) + (make_parents(cfg.masks_dir) if cfg.masks_dir else [])
    try:
        return _run_staged(cfg, predictor, state, fps)
    except BaseException:
        remove_empty(created)
        raise


def _run_staged(cfg: TrackConfig, predictor: Any, state: dict[str, Any], fps: float) -> tuple[int, float]:
    """Propagate and write into temporary folders beside the outputs, then move the results into place.
    Hidden folders that killed runs left there are removed first (``sam2rt.staging``)."""
    from sam2rt.staging import clean_stale, temp_prefix

    with ExitStack() as stack:
        clean_stale(cfg.out.parent)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=cfg.out.parent, prefix=temp_prefix("track"))))
        mask_tmp = tmp
        if cfg.masks_dir is not None:  # beside the final folder, so moving it in is a rename
            clean_stale(cfg.masks_dir.parent)
            mask_tmp = Path(stack.enter_context(
                tempfile.TemporaryDirectory(dir=cfg.masks_dir.parent, prefix=temp_prefix("masks"))))
        mask_root = mask_tmp / "masks"
        start = min(p.frame for p in cfg.prompts)
        produced, seconds = propagate(predictor, state, start, mask_root, cfg.progress)
        video_tmp = tmp / f"overlay{cfg.out.suffix}"
        write_overlay(state["frames"], mask_root, state["obj_ids"], video_tmp, fps, cfg.caption, cfg.progress)
        _commit(video_tmp, cfg.out, mask_root if cfg.masks_dir is not None else None, cfg.masks_dir)
    return produced, seconds


# --------------------------------------------------------------------------- CLI


def _cmd_track(args: argparse.Namespace) -> int:
    from sam2rt.prompts_file import load_prompts, prompts_from_flags

    if args.prompts is not None and (args.point or args.box is not None):
        raise Sam2rtError("pass either --prompts FILE or --point/--box, not both")
    prompts = load_prompts(args.prompts) if args.prompts is not None else prompts_from_flags(args.point, args.box)
    cfg = TrackConfig(model=args.model, video=args.video, prompts=tuple(prompts), out=args.out,
                      masks_dir=args.masks_dir, backend=args.backend, threads=args.threads)
    print_summary(track_video(cfg))
    say_random_weights(args.model)  # after the work, so that an error stays the only line
    return 0


def print_summary(r: TrackResult) -> None:
    """The end-of-run report: frames, objects, wall time, propagation FPS and the files written."""
    ids = ", ".join(map(str, r.obj_ids))
    print(f"frames: {r.frames}   objects: {len(r.obj_ids)} (ids {ids})")
    print(f"propagation: {r.propagated} frames in {r.propagate_s:.2f} s = {r.propagate_fps:.2f} FPS")
    print(f"wall time: {r.wall_s:.2f} s (model load, prompts, propagation, writing)")
    print(f"overlay: {r.out} ({r.fps:g} fps)")
    if r.masks_dir is not None:
        print(f"masks: {r.masks_dir}/<obj_id>/<frame>.png (0/255)")


_EPILOG = """\
prompts: --prompts FILE, or the shortcuts --point/--box (object 1 on frame 0).
A prompts file is a JSON list, one entry per object and frame (pixel coordinates of the video;
mask paths relative to the JSON file; PNG non-zero = object):
  [{"frame": 0, "obj_id": 1, "points": [[210, 350], [250, 220]], "labels": [1, 0]},
   {"frame": 0, "obj_id": 2, "box": [300, 0, 500, 400]},
   {"frame": 20, "obj_id": 3, "mask": "masks/cup.png"}]

examples:
  sam2rt track --model models/tiny --video clip.mp4 --point 420,260 --out overlay.mp4
  sam2rt track --model models/tiny --video frames/ --prompts prompts.json --out overlay.mp4 --masks-dir out_masks
"""


def add_track(sub: argparse._SubParsersAction) -> None:
    """Register ``sam2rt track``."""
    p = sub.add_parser("track", help="track objects through a video from clicks, boxes or masks",
                       description="Track objects through a video (ONNX Runtime on the CPU or GPU, or TensorRT engines: "
                                   "--backend) and write an overlay video.",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="exported model folder (sam2rt export)")
    p.add_argument("--video", type=Path, required=True, help="video file or folder of JPEG frames")
    p.add_argument("--prompts", type=Path, default=None, help="JSON prompts file")
    p.add_argument("--point", action="append", default=[], metavar="X,Y[,LABEL]",
                   help="a click on frame 0 for object 1, in video pixels; LABEL 1 (default) or 0; repeatable")
    p.add_argument("--box", default=None, metavar="X0,Y0,X1,Y1", help="a box on frame 0 for object 1")
    p.add_argument("--out", type=Path, required=True, help="overlay video to write (.mp4)")
    p.add_argument("--masks-dir", type=Path, default=None, help="also write DIR/<obj_id>/<frame:05d>.png masks")
    p.add_argument("--backend", default="ort", choices=("ort", "ort-gpu", "trt"),
                   help="inference backend: ort (ONNX Runtime CPU), ort-gpu (onnxruntime-gpu), trt (TensorRT engines from `sam2rt build` in MODEL_DIR/engines)")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads per graph (0: its default)")
    p.set_defaults(func=_cmd_track)
