"""The overlay video of ``sam2rt track``: every frame with its objects' masks drawn on it, and a caption."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from sam2rt.errors import Sam2rtError

if TYPE_CHECKING:
    import numpy as np


def draw_caption(bgr: np.ndarray, text: str) -> None:
    """Write ``text`` in white on a dark band along the top of a BGR frame (in place)."""
    import cv2

    scale = max(0.4, bgr.shape[1] / 1400)
    thickness = max(1, round(scale * 2))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(4, h // 2)
    cv2.rectangle(bgr, (0, 0), (min(bgr.shape[1], w + 2 * pad), h + base + 2 * pad), (0, 0, 0), thickness=-1)
    cv2.putText(bgr, text, (pad, pad + h), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def write_overlay(frames: Any, mask_root: Path, obj_ids: Sequence[int], path: Path, fps: float,
                  caption: str | None, progress: bool) -> None:
    """Every frame with its objects' masks drawn on it, as an mp4v video at ``path``."""
    import cv2
    import numpy as np
    from tqdm import tqdm

    from sam2rt.outputs import check_video_frames
    from sam2rt.runtime.imageops import overlay

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames.width, frames.height))
    if not writer.isOpened():
        raise Sam2rtError(f"OpenCV cannot open an mp4v video writer for {frames.width}x{frames.height} frames in "
                          f"{path.parent}; check the free disk space there")
    try:
        for frame_idx in tqdm(range(len(frames)), desc="write overlay", unit="frame", disable=not progress):
            masks = np.stack([cv2.imread(str(mask_root / str(o) / f"{frame_idx:05d}.png"), cv2.IMREAD_GRAYSCALE) > 0
                              for o in obj_ids])  # (K, H, W) bool
            bgr = cv2.cvtColor(overlay(frames[frame_idx], masks, obj_ids), cv2.COLOR_RGB2BGR)
            if caption:
                draw_caption(bgr, caption)
            writer.write(bgr)
    finally:
        writer.release()
    check_video_frames(path, len(frames))
