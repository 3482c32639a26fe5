"""EdgeTAM through the official-API predictors: ``ImagePredictor`` against the official ``SAM2ImagePredictor``
and ``VideoPredictor`` against the official video predictor (one object: the official EdgeTAM predictor
cannot encode two objects' memories at once, upstream EdgeTAM#15), same seeded weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SIZE = 256


@pytest.fixture(scope="module")
def model(edgetam_256: Path):
    import torch

    from sam2rt.export.checkpoints import build_model

    model, _ = build_model("edgetam", SIZE, random_seed=0)  # the weights of edgetam_256
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield model
    torch.set_num_threads(threads)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def test_image_predictor_matches_official(model, edgetam_256: Path, shared_data: Path) -> None:
    import torch
    from PIL import Image
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from sam2rt.runtime.image_predictor import ImagePredictor

    image = np.array(Image.open(shared_data / "images" / "truck.jpg").convert("RGB"))
    h, w = image.shape[:2]
    official = SAM2ImagePredictor(model)
    official._bb_feat_sizes = [(SIZE // 4, SIZE // 4), (SIZE // 8, SIZE // 8), (SIZE // 16, SIZE // 16)]
    ours = ImagePredictor(edgetam_256, threads=1)
    with torch.inference_mode():
        official.set_image(image)
    ours.set_image(image)
    cases = {"click, multimask": dict(point_coords=[[0.45 * w, 0.55 * h]], point_labels=[1]),
             "box + negative click": dict(box=[0.2 * w, 0.25 * h, 0.7 * w, 0.8 * h], point_coords=[[0.6 * w, 0.3 * h]],
                                          point_labels=[0], multimask_output=False)}
    for name, kwargs in cases.items():
        with torch.inference_mode():
            ref_masks, ref_scores, ref_low = official.predict(**kwargs)
        masks, scores, low = ours.predict(**kwargs)
        assert masks.shape == ref_masks.shape, name
        ious = [_iou(m > 0, r > 0) for m, r in zip(masks, ref_masks)]
        print(f"\n{name}: mask IoU {min(ious):.6f}, |score diff| {np.abs(scores - ref_scores).max():.2e}")
        assert min(ious) >= 0.999, name
        np.testing.assert_allclose(scores, ref_scores, atol=1e-4, err_msg=name)


def test_video_predictor_matches_official(model, edgetam_256: Path, shared_data: Path) -> None:
    import torch

    from sam2rt.runtime.predictor import VideoPredictor

    frames = str(shared_data / "videos" / "bedroom_frames")
    prompt = dict(points=[[300, 300], [420, 250]], labels=[1, 0])
    results = []
    for predictor, context in ((model, torch.inference_mode), (VideoPredictor(edgetam_256, threads=1, progress=False),
                                                               torch.no_grad)):
        with context():
            state = predictor.init_state(frames)
            _, _, first = predictor.add_new_points_or_box(state, 0, 1, **prompt)
            run = {0: np.asarray(first)}
            for f, _, masks in predictor.propagate_in_video(state, max_frame_num_to_track=11):
                run[f] = np.asarray(masks)
        results.append(run)
    theirs, ours = results
    assert sorted(ours) == sorted(theirs) == list(range(12))
    worst = min(_iou(ours[f] > 0, theirs[f] > 0) for f in ours)
    diff = max(float(np.abs(ours[f] - theirs[f]).max()) for f in ours)
    print(f"\nVideoPredictor vs official EdgeTAM, 12 frames: min IoU {worst:.6f}, max |logit diff| {diff:.3g}")
    assert worst >= 0.999
