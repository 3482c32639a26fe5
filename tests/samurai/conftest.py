"""Fixtures of the SAMURAI parity tests: a forced model, real clips as JPEG folders, the reference runner.

Helpers and sizes: samurai_harness.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from samurai_harness import FORCING, FRAMES, SIZE, run_reference  # noqa: E402

CLIPS = {"bedroom": "videos/bedroom.mp4", "dog": "videos/dog.mp4"}


@pytest.fixture(scope="session")
def samurai_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """sam2.1 tiny at SIZE px, seeded random weights pushed to exercise SAMURAI: (model dir, checkpoint).

    The object score swings around 0 and -1 from frame to frame (presence under SAM 2's and SAMURAI's
    thresholds, memory admission), and the IoU head is scaled so the three candidates' predicted IoUs
    spread over (0, 1) and disagree (the choice and the IoU thresholds matter). Random-weight masks are
    speckled over the whole image (every box is the full frame), so at 512 px one candidate is made empty
    (its hypernetwork output zero): the filter's box IoU then differs between candidates.
    """
    torch = pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from sam2rt.export.checkpoints import build_model, write_official_checkpoint
    from sam2rt.export.exporter import ExportConfig, export_model

    tmp = tmp_path_factory.mktemp(f"samurai{SIZE}")
    model, _ = build_model("sam2.1_hiera_tiny", SIZE, random_seed=0)
    score = model.sam_mask_decoder.pred_obj_score_head.layers[-1]
    iou = model.sam_mask_decoder.iou_prediction_head.layers[-1]
    force = FORCING[SIZE]
    with torch.no_grad():  # random-weight scores sit near 0.16 with ~0.01 spread (tests/conftest.py)
        score.weight.mul_(1000.0)
        score.bias.mul_(1000.0).sub_(160.0)
        # measured while tracking (bedroom, memory-conditioned): the IoU head's w.x per candidate sits near
        # force["wx"] with ~0.001 spread, and a tracked object's score near -score_shift with ~0.5 spread;
        # scaled and centred, the predicted IoUs spread over (0, 1) and the score crosses -1 and 0
        iou.weight.mul_(force["iou_scale"])
        iou.bias.copy_(-force["iou_scale"] * torch.tensor(force["wx"]) + force["iou_offset"])
        score.bias.add_(force["score_shift"])
        for token in force["empty_tokens"]:
            hyper = model.sam_mask_decoder.output_hypernetworks_mlps[token].layers[-1]
            hyper.weight.zero_()
            hyper.bias.zero_()
    ckpt = write_official_checkpoint(model, tmp / "samurai.pt")
    export_model(ExportConfig(model="sam2.1_hiera_tiny", out=tmp / "model", image_size=SIZE, checkpoint=ckpt,
                              verify=False))
    return tmp / "model", ckpt


@pytest.fixture(scope="session")
def clips(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The first FRAMES frames of two real clips as JPEG folders (what both predictors read); the next
    frames in "<name>_more" (a reference started later still sees a video of at least 16 frames)."""
    import cv2

    out = {}
    for name, rel in CLIPS.items():
        folder, more = tmp_path_factory.mktemp(f"clip_{name}"), tmp_path_factory.mktemp(f"clip_{name}_more")
        cap = cv2.VideoCapture(str(shared_data / rel))
        for i in range(FRAMES + 16):
            ok, frame = cap.read()
            assert ok, f"{rel} has fewer than {FRAMES + 16} frames"
            cv2.imwrite(str((folder if i < FRAMES else more) / f"{i:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
        cap.release()
        out[name], out[f"{name}_more"] = folder, more
    return out


@pytest.fixture(scope="session")
def reference(samurai_model, clips, tmp_path_factory: pytest.TempPathFactory):
    """``reference(clip, prompts, start=0)``: SAMURAI's run of one object on ``clip`` from frame ``start``
    (prompt frames relative to it), as arrays over the whole clip (frames before ``start``: empty masks, no
    memory); cached for the session (the live test reuses the predictor test's runs).

    A reference started later runs on the clip from ``start`` with frames appended up to 16: the pointer
    window and its temporal scale are ``min(video length, 16)`` (``max_obj_ptrs_in_encoder``), which a
    live stream (no length) takes as 16; results are compared on the first FRAMES - start frames."""
    import json

    import numpy as np

    _, ckpt = samurai_model
    cache: dict[str, dict] = {}
    tmp = tmp_path_factory.mktemp("samurai_reference")

    def run(clip: str, prompts: list[dict], start: int = 0) -> dict:
        key = json.dumps([clip, prompts, start])
        if key not in cache:
            frames = clips[clip]
            if start:
                frames = tmp / f"{clip}_from{start}_{len(cache)}"
                frames.mkdir()
                for f in range(start, max(FRAMES, start + 16)):
                    src = clips[clip] if f < FRAMES else clips[f"{clip}_more"]
                    (frames / f"{f - start:05d}.jpg").write_bytes((src / f"{f:05d}.jpg").read_bytes())
            ref = run_reference(ckpt, frames, prompts, tmp / f"ref{len(cache)}.npz", num_frames=FRAMES - start)
            pad = lambda a, fill: np.concatenate([np.full((start, *a.shape[1:]), fill, a.dtype), a])  # noqa: E731
            cache[key] = {"masks": pad(ref["masks"], False), "iou": pad(ref["iou"], np.nan),
                          "memory": pad(np.where(ref["memory"] >= 0, ref["memory"] + start, -1), -1)}
        return cache[key]

    return run
