"""A constant-velocity Kalman filter on one object's box, as SAMURAI (Yang et al. 2024, arXiv 2411.11922) uses.

State (8,): box centre x, y, aspect ratio a = w / h, height h, and their velocities, one step per frame.
The box is observed directly (x, y, a, h). Noise scales with the box height (the SORT/DeepSORT choice the
paper adopts): position 1/20 of h, velocity 1/160 of h; the aspect ratio gets small fixed noise.
Boxes are (x0, y0, x1, y1) pixel coordinates of the mask's first and last foreground column/row, float64.
"""

from __future__ import annotations

import numpy as np

_POS, _VEL = 1.0 / 20.0, 1.0 / 160.0
_F = np.eye(8) + np.eye(8, k=4)  # x_{t+1} = x_t + v_t
_H = np.eye(4, 8)  # measure the first four state entries


def box_to_xyah(box: tuple[float, float, float, float]) -> np.ndarray:
    """(x0, y0, x1, y1) -> (4,) float64 centre x, centre y, w / h, h; a zero height counts as 1."""
    x0, y0, x1, y1 = (float(v) for v in box)
    h = y1 - y0
    if h == 0:
        h = 1.0
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / h, h])


def xyah_to_box(xyah: np.ndarray) -> tuple[float, float, float, float]:
    """(4,) centre x, centre y, w / h, h -> (x0, y0, x1, y1)."""
    x, y, a, h = (float(v) for v in xyah[:4])
    return x - a * h / 2, y - h / 2, x + a * h / 2, y + h / 2


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """IoU of two (x0, y0, x1, y1) boxes by area (x1 - x0)(y1 - y0); an empty box (0, 0, 0, 0) scores 0."""
    if tuple(b) == (0, 0, 0, 0):
        return 0.0
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union != 0 else 0.0


class BoxKalman:
    """One object's box filter. ``BoxKalman(box)`` starts a track at a measured box, velocity zero."""

    def __init__(self, box: tuple[float, float, float, float]) -> None:
        z = box_to_xyah(box)
        h = z[3]
        std = np.array([2 * _POS * h, 2 * _POS * h, 1e-2, 2 * _POS * h,
                        10 * _VEL * h, 10 * _VEL * h, 1e-5, 10 * _VEL * h])
        self.mean = np.concatenate([z, np.zeros(4)])  # (8,)
        self.cov = np.diag(std * std)  # (8, 8)

    def predict(self) -> None:
        """Advance one frame."""
        h = self.mean[3]
        std = np.array([_POS * h, _POS * h, 1e-2, _POS * h, _VEL * h, _VEL * h, 1e-5, _VEL * h])
        self.mean = _F @ self.mean
        self.cov = _F @ self.cov @ _F.T + np.diag(std * std)

    def update(self, box: tuple[float, float, float, float]) -> None:
        """Correct the state with a measured box."""
        h = self.mean[3]
        r = np.array([_POS * h, _POS * h, 1e-1, _POS * h])
        s = _H @ self.cov @ _H.T + np.diag(r * r)  # (4, 4) innovation covariance
        gain = np.linalg.solve(s, _H @ self.cov).T  # (8, 4); s and cov are symmetric
        innovation = box_to_xyah(box) - _H @ self.mean
        self.mean = self.mean + gain @ innovation
        self.cov = self.cov - gain @ s @ gain.T

    def box(self) -> tuple[float, float, float, float]:
        """The current (predicted or corrected) box, (x0, y0, x1, y1)."""
        return xyah_to_box(self.mean)
