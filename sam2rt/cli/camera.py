"""``sam2rt camera``: track one object live from a camera, a stream URL or a video file.

Frames come from ``cv2.VideoCapture`` and go through a :class:`~sam2rt.runtime.stream.StreamTracker`; the
object is prompted on the first frame (``--point``/``--box``, default a positive click at the centre). The
overlay is shown in a window when a display exists, otherwise written to a video file. Live sources
(camera index, URL) are reopened a few times when they stop delivering frames; a file just ends.
Heavy modules (OpenCV, ONNX Runtime) are imported inside the handler, so ``sam2rt --help`` stays instant.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from sam2rt.errors import Sam2rtError
from sam2rt.outputs import check_writable_file
from sam2rt.signals import Terminated

WINDOW = "sam2rt camera"
DEFAULT_OUT = Path("camera_out.mp4")
RECONNECT_DELAY_S = 1.0  # seconds before reconnect attempt n, times n


def _point(text: str) -> tuple[float, float, int]:
    """``X,Y[,LABEL]`` -> (x, y, label); label 1 (positive, default) or 0 (negative)."""
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (2, 3) or (len(values) == 3 and values[2] not in (0.0, 1.0)):
        raise argparse.ArgumentTypeError(f"{text!r}: expected X,Y or X,Y,LABEL with LABEL 1 (positive) or 0")
    return values[0], values[1], int(values[2]) if len(values) == 3 else 1


def _box(text: str) -> list[float]:
    """``X0,Y0,X1,Y1`` -> four floats."""
    try:
        values = [float(p) for p in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"{text!r}: expected X0,Y0,X1,Y1 (top-left and bottom-right pixels)")
    return values


def add_camera(sub: argparse._SubParsersAction) -> None:
    """Register the ``camera`` subcommand."""
    p = sub.add_parser("camera", help="track an object live from a camera, stream URL or video file")
    p.add_argument("--model", type=Path, required=True, help="exported model directory (sam2rt export)")
    p.add_argument("--source", required=True, help="camera index (0), stream URL (rtsp://...) or video file")
    p.add_argument("--point", type=_point, action="append", default=[], metavar="X,Y[,LABEL]",
                   help="click on the first frame in pixels, LABEL 1 positive (default) or 0 negative; repeatable")
    p.add_argument("--box", type=_box, default=None, metavar="X0,Y0,X1,Y1", help="box on the first frame in pixels")
    p.add_argument("--out", type=Path, default=None,
                   help=f"overlay video; written when no window can be shown (default {DEFAULT_OUT}), "
                        "and also next to the window when given")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.add_argument("--bgr-display", action="store_true",
                   help="swap red and blue in the shown/written overlay (for sinks whose colours come out swapped)")
    p.add_argument("--threads", type=int, default=0, help="inference threads (0: the backend's default)")
    p.add_argument("--backend", default="ort", choices=("ort", "ort-gpu", "trt"),
                   help="inference backend: ort (ONNX Runtime CPU), ort-gpu (onnxruntime-gpu), trt (TensorRT engines from `sam2rt build` in MODEL_DIR/engines)")
    p.add_argument("--reconnect", type=int, default=3, help="reopen attempts when a live source stops (default 3)")
    p.set_defaults(func=_cmd_camera)


class FrameReader:
    """BGR frames from ``cv2.VideoCapture``; a live source (index or URL) is reopened when it stops."""

    def __init__(self, source: str, reconnect: int) -> None:
        import cv2

        self.text = source
        self.live = source.isdigit() or "://" in source
        self.source: int | str = int(source) if source.isdigit() else source
        self.reconnect = max(0, reconnect)
        if not self.live and not Path(source).is_file():
            raise Sam2rtError(f"video source {source!r} not found; pass a camera index (0), a stream URL "
                              "(rtsp://...) or an existing video file")
        self.cap = cv2.VideoCapture(self.source)
        self.read_count = 0
        self.claimed = 0 if self.live else int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if not self.cap.isOpened():
            self.cap.release()
            raise Sam2rtError(f"cannot open video source {source!r}; check the camera index, the URL or that "
                              "OpenCV can decode the file (e.g. an .mp4 with H.264 or MPEG-4)")

    def fps(self) -> float:
        import cv2

        fps = self.cap.get(cv2.CAP_PROP_FPS)
        return fps if 1.0 <= fps <= 240.0 else 30.0

    def read(self) -> Any | None:
        """The next (H, W, 3) uint8 BGR frame, or None when the source has ended."""
        ok, frame = self.cap.read()
        if ok:
            self.read_count += 1
            return frame
        if self.live:
            return self._reopen()
        if 0 < self.read_count < self.claimed:  # the container promised more: say so, and where it broke
            print(f"sam2rt: warning: {self.text}: the container says {self.claimed} frames but only "
                  f"{self.read_count} decode (frame {self.read_count} fails); the video ends there", file=sys.stderr)
            self.claimed = 0
        return None

    def _reopen(self) -> Any | None:
        import cv2

        for attempt in range(1, self.reconnect + 1):
            print(f"sam2rt camera: {self.text} stopped delivering frames; reconnecting "
                  f"({attempt}/{self.reconnect})", file=sys.stderr)
            self.cap.release()
            time.sleep(RECONNECT_DELAY_S * attempt)
            self.cap = cv2.VideoCapture(self.source)
            ok, frame = self.cap.read() if self.cap.isOpened() else (False, None)
            if ok:
                return frame
        return None

    def close(self) -> None:
        self.cap.release()


def display_available() -> bool:
    """A window can be shown: $DISPLAY is set and this OpenCV build has a GUI backend (headless has none)."""
    import cv2

    if not os.environ.get("DISPLAY"):
        return False
    gui = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    if gui is not None and gui.group(1).upper() == "NONE":
        return False
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
    except cv2.error:
        return False
    return True


class StagedVideo:
    """An mp4v writer into a hidden file beside ``path``, moved onto ``path`` only by ``commit`` after the file
    was reopened and its frames counted; an earlier video at ``path`` survives any failure."""

    def __init__(self, path: Path, fps: float, width: int, height: int) -> None:
        import cv2

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.tmp = path.with_name(f".sam2rt-camera-{os.getpid()}-{path.name}")  # same suffix: same container
        self.count = 0
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not self.writer.isOpened():
            self.discard()
            raise Sam2rtError(f"cannot write the video {path}; choose a writable path ending in .mp4 or .avi")

    def write(self, bgr: Any) -> None:
        self.writer.write(bgr)
        self.count += 1

    def release(self) -> None:
        self.writer.release()

    def commit(self) -> None:
        from sam2rt.outputs import check_video_frames, replace

        try:
            check_video_frames(self.tmp, self.count)
            replace(self.tmp, self.path, "--out")
        finally:
            self.discard()

    def discard(self) -> None:
        self.writer.release()
        self.tmp.unlink(missing_ok=True)


def _first_prompt(args: argparse.Namespace, width: int, height: int) -> dict[str, Any]:
    """add_new_prompt arguments from --point/--box; a positive click at the centre when neither is given."""
    prompt: dict[str, Any] = {}
    if args.point:
        prompt["points"] = [[x, y] for x, y, _ in args.point]
        prompt["labels"] = [label for _, _, label in args.point]
    if args.box is not None:
        prompt["bbox"] = args.box
    return prompt or {"points": [[width / 2, height / 2]], "labels": [1]}


class OverlaySink:
    """Shows and/or writes the overlay of each tracked frame (BGR in, BGR out)."""

    def __init__(self, show: bool, writer: Any | None, swap: bool) -> None:
        self.show, self.writer, self.swap = show, writer, swap
        self.closed = False  # the user closed the window or pressed q / Esc

    def put(self, bgr: Any, obj_ids: list[int], masks: Any) -> None:
        """bgr: the frame; masks: (K, H, W) bool (the tracker's fast output)."""
        import cv2
        import numpy as np

        from sam2rt.runtime.imageops import overlay

        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        vis = overlay(rgb, masks, obj_ids)
        out = np.ascontiguousarray(vis if self.swap else vis[:, :, ::-1])
        if self.writer is not None:
            self.writer.write(out)
        if self.show:
            cv2.imshow(WINDOW, out)
            key = cv2.waitKey(1) & 0xFF
            self.closed = key in (ord("q"), 27) or cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1

    def close(self) -> None:
        import cv2

        if self.writer is not None:
            self.writer.release()
        if self.show:
            cv2.destroyWindow(WINDOW)


def _cmd_camera(args: argparse.Namespace) -> int:
    import cv2

    from sam2rt.runtime.stream import StreamTracker

    if args.max_frames is not None and args.max_frames < 1:
        raise Sam2rtError(f"--max-frames must be at least 1, got {args.max_frames}")
    reader = FrameReader(args.source, args.reconnect)
    sink, writer = None, None
    try:
        first = reader.read()
        if first is None:
            raise Sam2rtError(f"video source {args.source!r} delivered no frame; check that it is not empty or busy")
        height, width = first.shape[:2]
        show = display_available()
        out_path = args.out if args.out is not None or show else DEFAULT_OUT
        if out_path is not None:  # before the model loads: a bad --out fails at once
            check_writable_file(out_path, "--out")
        tracker = StreamTracker(args.model, backend=args.backend, threads=args.threads, bgr=True)
        start = time.perf_counter()
        tracker.load_first_frame(first)
        _, obj_ids, logits = tracker.add_new_prompt(0, 1, **_first_prompt(args, width, height))
        count, track_s = 1, time.perf_counter() - start
        writer = StagedVideo(out_path, reader.fps(), width, height) if out_path is not None else None
        sink = OverlaySink(show, writer, args.bgr_display)
        sink.put(first, obj_ids, logits[:, 0] > 0)
        try:
            while (args.max_frames is None or count < args.max_frames) and not sink.closed:
                frame = reader.read()
                if frame is None:
                    break
                if frame.shape[:2] != (height, width):  # a reconnected camera may come back in another mode
                    frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
                t0 = time.perf_counter()
                result = tracker.track(frame, output="result", mask_dtype=bool)  # no full-size float logits
                track_s += time.perf_counter() - t0
                sink.put(frame, result.obj_ids, result.masks)
                count += 1
        except (KeyboardInterrupt, Terminated):  # a live stream is stopped this way: keep what was recorded
            print("sam2rt camera: interrupted, stopping", file=sys.stderr)
        total_s = time.perf_counter() - start
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    finally:
        reader.close()
        if sink is not None:
            sink.close()
    if writer is not None:
        writer.commit()
    print(f"tracked {count} frames in {total_s:.2f} s: {count / max(total_s, 1e-9):.1f} FPS end to end, "
          f"{count / max(track_s, 1e-9):.1f} FPS tracking")
    if writer is not None:
        print(f"overlay written to {out_path}")
    return 0
