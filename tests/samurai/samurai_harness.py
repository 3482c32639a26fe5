"""Helpers of the SAMURAI parity tests (tests/samurai is on sys.path): sizes, the reference runner, IoU.

The reference is SAMURAI's own predictor (PyPI ``absolutely-not-samurai``, its fork of sam2) in its own
virtual environment (``make samurai-env`` -> .venv-samurai), run as a subprocess that writes its results
to a file (benchmarks/samurai_reference.py). Sizes: SAMURAI_TEST_SIZE / SAMURAI_TEST_FRAMES (the acceptance run: 512 and
60; ``make test``: the defaults below).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from sam2rt.benchmarks import samurai_parity as P

REPO = Path(__file__).resolve().parents[2]
REFERENCE_PY = REPO / ".venv-samurai" / "bin" / "python"
SIZE = int(os.environ.get("SAMURAI_TEST_SIZE", "256"))
FRAMES = int(os.environ.get("SAMURAI_TEST_FRAMES", "16"))
# SAMURAI's parameters for both sides: the short make-test clips reach the filter's choice with a shorter
# stable streak (a parameter of both); the acceptance run keeps the published 15
STABLE = int(os.environ.get("SAMURAI_TEST_STABLE", "5"))

# per size (measure_forcing.py, its docstring): the IoU head's scale, the centres of its w.x per token and the
# offset; the object score's shift; the multimask tokens whose mask is zeroed (an empty candidate: its box is
# (0, 0, 0, 0), far from the filter's, so the filter-weighted choice passes it over when its IoU leads by little);
# the clips on which that was tuned to happen ("differs_on": the tests require a pick other than the highest IoU
# there; on dog at 512 px the three IoUs stay further apart than the filter's weight can overturn: reported only)
FORCING = {256: {"iou_scale": 1500.0, "wx": [0.1182, 0.0953, -0.0351, 0.1309], "iou_offset": 0.2,
                 "score_shift": -1.5, "empty_tokens": (), "differs_on": ()},
           512: {"iou_scale": 500.0, "wx": [0.1206, 0.0960, -0.0405, 0.1198], "iou_offset": 0.4,
                 "score_shift": 7.5, "empty_tokens": (3,), "differs_on": ("bedroom",)}}


def samurai_config():
    """The SamuraiConfig both sides run with (the tiny model's published one, STABLE frames)."""
    from sam2rt.runtime.memory_policy import SamuraiConfig

    return SamuraiConfig.for_model("sam2.1_hiera_tiny", stable_frames=STABLE)


def run_reference(ckpt: Path, frames: Path, prompts: list[dict], out: Path,
                  num_frames: int = FRAMES) -> dict[str, np.ndarray]:
    """SAMURAI's predictor on one object (its only case): masks (T, H, W) bool, memory (T, 7), iou (T,)."""
    if not REFERENCE_PY.exists():
        pytest.skip("SAMURAI's reference venv is missing: run `make samurai-env`")
    job = out.with_suffix(".json")
    job.write_text(json.dumps({"checkpoint": str(ckpt), "image_size": SIZE, "frames": str(frames),
                               "num_frames": num_frames, "prompts": prompts,
                               "config": "configs/samurai/sam2.1_hiera_t.yaml",
                               "overrides": [f"++model.{P.REFERENCE_KEYS[k]}={v}"
                                             for k, v in vars(samurai_config()).items()]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    subprocess.run([str(REFERENCE_PY), str(P.SCRIPT), str(job), str(out)],
                   check=True, cwd=out.parent, env={**env, "OMP_NUM_THREADS": "2"}, stdout=subprocess.DEVNULL)
    data = np.load(out)
    shape = tuple(data["shape"])
    masks = np.unpackbits(data["masks"], axis=-1, count=shape[-1]).astype(bool)
    return {"masks": masks, "memory": data["memory"], "iou": data["iou"]}


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks; two empty masks agree (1.0)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)
