"""End-to-end parity of VideoPredictor (ONNX Runtime) with the official SAM2VideoPredictor (PyTorch).

Same weights, same JPEG frames from ../shared/data, same prompts, image size 512. The object-score head
is rescaled so that objects are judged present on some frames and absent on others: random weights alone
give every object the same score sign on every frame, which would hide the gating branches.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sam2rt.benchmarks.parity import compare, official_predictor, run_steps
from sam2rt.manifest import load_manifest
from sam2rt.runtime.predictor import VideoPredictor

SIZE, FRAMES = 512, 12


@pytest.fixture(scope="module")
def clip(shared_data: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bedroom12")
    for i in range(FRAMES):
        shutil.copy(shared_data / "videos" / "bedroom_frames" / f"{i:05d}.jpg", out)
    return out


def _scenario(height: int, width: int) -> list[tuple]:
    mask = np.zeros((height, width), bool)
    mask[150:350, 500:800] = True
    return [
        ("points", 0, 1, {"points": [[420, 260], [640, 300]], "labels": [1, 0]}),  # positive + negative
        ("points", 0, 2, {"box": [120, 100, 330, 420]}),
        ("mask", 2, 3, mask),  # a mask prompt, on an object added after frame 0
        ("propagate", {}),
        ("points", 7, 1, {"points": [[500, 200]], "labels": [1], "clear_old_points": False}),  # refinement
        ("propagate", {"start_frame_idx": 7}),  # re-propagation
        ("propagate", {"start_frame_idx": 7, "reverse": True}),
        ("points", 9, 4, {"points": [[300, 300]], "labels": [1]}),  # added mid-video
        ("propagate", {"start_frame_idx": 9}),
        ("remove", 2),
        ("propagate", {"start_frame_idx": 0, "max_frame_num_to_track": 4}),
    ]


def test_video_predictor_matches_official(forced_model, clip: Path) -> None:
    model_dir, ckpt = forced_model
    reference = official_predictor(load_manifest(model_dir), ckpt, None)
    ours = VideoPredictor(model_dir, fill_hole_area=reference.fill_hole_area, progress=False)
    steps = _scenario(540, 960)
    ref = run_steps(reference, str(clip), steps, frame_hook=torch.inference_mode)
    got = run_steps(ours, str(clip), steps)
    report = compare(ref, got)
    print(report.summary())
    assert report.mean_iou >= 0.999, report.summary()
    assert report.min_iou >= 0.99, report.summary()

    # the branches random weights would hide did occur: objects present and absent, a removed object
    absent = [(s, f) for s, f, ids, m in got if (m.reshape(len(ids), -1).max(axis=1) <= -1000).any()]
    present = [(s, f) for s, f, ids, m in got if (m.reshape(len(ids), -1).max(axis=1) > 0).any()]
    assert absent and present, (len(absent), len(present))
    assert got[-1][2] == [1, 3, 4]
