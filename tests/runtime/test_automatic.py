"""AutomaticMaskGenerator (ONNX Runtime) against the official SAM2AutomaticMaskGenerator (PyTorch), same weights.

The official module needs torchvision (no CPU build here): ``benchmarks/official_everything`` imports it
with stand-ins for ``batched_nms``, ``box_area`` and three transforms; ``test_nms_stand_in_*`` check the NMS
stand-in on hand-made cases and ``tests/benchmarks/test_torchvision_stand_ins.py`` against torchvision's own
source. Everything else is the official code, unmodified.

Two real images: ``truck.jpg`` (the SAM 2 data) and matplotlib's ``grace_hopper.jpg`` (outside it), each with
and without crops, with and without ``use_m2m``, plus a synthetic image whose masks stay inside crops. Seeded
random weights predict IoUs near 0.5 and near-uniform low-contrast masks, so the options are set for masks to
survive (IoU threshold 0.45, stability offset 0.05, or the filters off); NMS stays on (the same survivor must
win) except where it is switched off (threshold 1.0) so that every surviving mask is compared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from sam2rt.benchmarks.official_everything import batched_nms, official_generator, official_generator_cls
from sam2rt.runtime import amg_utils as U
from sam2rt.runtime.automatic import AutomaticMaskGenerator

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

SIZE = 256
MASK_IOU_MIN, SCORE_TOL = 0.999, 1e-4
SURVIVE = dict(pred_iou_thresh=0.45, stability_score_thresh=0.1, stability_score_offset=0.05)


@pytest.fixture(scope="module")
def official_cls() -> type:
    pytest.importorskip("sam2")
    return official_generator_cls()


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    from sam2rt.export.checkpoints import build_model

    return build_model("sam2.1_hiera_tiny", SIZE, random_seed=0)[0]  # the weights of exported_tiny_256


@pytest.fixture(scope="module")
def images(shared_data: Path) -> dict[str, np.ndarray]:
    import matplotlib.cbook

    return {"truck": np.array(Image.open(shared_data / "images" / "truck.jpg").convert("RGB")),  # 1800 x 1200
            # a real photograph outside the SAM 2 data: matplotlib's sample portrait (512 x 600; the dev extra)
            "grace_hopper": np.array(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")),
            "shapes": _shapes()}


def _shapes() -> np.ndarray:
    """Five flat disks on grey: flat regions give random weights flat logits, so masks follow the disks and
    stay inside crops (on the real images every crop mask reaches a crop edge and is dropped)."""
    import cv2

    rgb = np.full((600, 800, 3), 128, np.uint8)
    for x, y, r, color in ((150, 150, 60, (230, 40, 40)), (600, 130, 70, (40, 200, 60)), (400, 300, 50, (40, 60, 230)),
                           (170, 450, 80, (240, 220, 30)), (640, 470, 60, (20, 20, 20))):
        cv2.circle(rgb, (x, y), r, color, -1)
    return rgb


# ---- comparison ---------------------------------------------------------------------------------------
def _compare(ours: list[dict], ref: list[dict], case: str) -> dict[str, float]:
    """Same count; each official record matched to ours (same prompt point, best mask IoU); then masks, boxes,
    areas, scores, crop boxes. Returns the worst differences seen."""
    assert len(ours) == len(ref), f"{case}: {len(ours)} masks, official {len(ref)}"
    left = list(range(len(ours)))
    worst = {"iou": 1.0, "score": 0.0, "area": 0.0, "box": 0.0, "same_order": 0.0}
    for r_idx, r in enumerate(ref):
        mask_r = U.decode_segmentation(r["segmentation"])
        same_point = [i for i in left if np.allclose(ours[i]["point_coords"], r["point_coords"], atol=1e-3)]
        assert same_point, f"{case}: no mask of ours from the prompt {r['point_coords']}"
        ious = []
        for i in same_point:
            m = U.decode_segmentation(ours[i]["segmentation"])
            ious.append(np.logical_and(m, mask_r).sum() / max(np.logical_or(m, mask_r).sum(), 1))
        i = same_point[int(np.argmax(ious))]
        left.remove(i)
        o = ours[i]
        worst["same_order"] += float(i == r_idx) / len(ref)
        worst["iou"] = min(worst["iou"], float(max(ious)))
        worst["score"] = max(worst["score"], abs(o["predicted_iou"] - r["predicted_iou"]),
                             abs(o["stability_score"] - r["stability_score"]))
        worst["area"] = max(worst["area"], abs(o["area"] - r["area"]) / max(r["area"], 1))
        worst["box"] = max(worst["box"], float(np.abs(np.subtract(o["bbox"], r["bbox"])).max()))
        assert o["crop_box"] == r["crop_box"], case
        assert type(o["segmentation"]) is type(r["segmentation"]), case
    print(f"\n{case}: {len(ref)} masks, min IoU {worst['iou']:.6f}, max |score diff| {worst['score']:.2e}, max "
          f"relative area diff {worst['area']:.2e}, max box diff {worst['box']:.0f} px, "
          f"{100 * worst['same_order']:.0f}% in the same order")
    assert worst["iou"] >= MASK_IOU_MIN and worst["score"] <= SCORE_TOL and worst["box"] == 0, (case, worst)
    assert worst["area"] <= 1 - MASK_IOU_MIN, (case, worst)
    return worst


# Crop masks of random weights cover their crop and touch its inner edges, so they are dropped; logits above 0.2
# with the IoU and stability filters off (0.0, the official "off") leave small masks that survive in crops.
CROPS = dict(points_per_side=4, crop_n_layers=1, mask_threshold=0.2, pred_iou_thresh=0.0, stability_score_thresh=0.0)
CASES = {  # image, options, masks from crop layer 1 expected; NMS on (the same survivor must win) unless noted
    "truck, no crops, no NMS": ("truck", dict(points_per_side=4, box_nms_thresh=1.0, **SURVIVE), False),
    "truck, crops + m2m": ("truck", dict(use_m2m=True, output_mode="coco_rle", **CROPS), True),
    "grace_hopper, no crops + m2m": ("grace_hopper", dict(points_per_side=4, use_m2m=True,
                                                          output_mode="uncompressed_rle", **SURVIVE), False),
    "grace_hopper, crops": ("grace_hopper", dict(CROPS), True),
    "shapes, crops + m2m": ("shapes", dict(points_per_side=4, crop_n_layers=1, mask_threshold=0.2, use_m2m=True,
                                           **SURVIVE), True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_parity_with_official(case, exported_tiny_256, official_cls, model, images) -> None:
    image, options, from_crops = CASES[case]
    ours = AutomaticMaskGenerator(exported_tiny_256, **options).generate(images[image])
    with torch.inference_mode():
        ref = official_generator(official_cls, model, SIZE, **options).generate(images[image])
    assert ref, f"{case}: the official generator found no mask; the comparison would prove nothing"
    _compare(ours, ref, case)
    h, w = images[image].shape[:2]
    in_crops = sum(r["crop_box"] != [0, 0, w, h] for r in ref)
    assert (in_crops > 0) == from_crops, f"{case}: {in_crops} official masks from crop layer 1"


# ---- the pieces -----------------------------------------------------------------------------------------
def test_nms_stand_in_hand_made() -> None:
    """Known answers: IoU 81/119 = 0.68 survives 0.7 but not 0.6; equal IoU to the threshold survives; a
    suppressed box does not suppress others; categories never suppress each other."""
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [2, 2, 12, 12], [50, 50, 60, 60]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.1])
    zeros = torch.zeros(4)
    assert batched_nms(boxes, scores, zeros, 0.7).tolist() == [0, 1, 2, 3]
    assert batched_nms(boxes, scores, zeros, 0.6).tolist() == [0, 2, 3]  # 1 goes; 2 overlaps 0 by 64/136
    assert batched_nms(boxes, scores, zeros, 0.4).tolist() == [0, 3]
    half = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 5]], dtype=torch.float32)  # IoU exactly 0.5
    assert batched_nms(half, torch.tensor([0.9, 0.8]), torch.zeros(2), 0.5).tolist() == [0, 1]
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 0, 1]), 0.4).tolist() == [0, 1, 3]


@pytest.mark.parametrize("n", [30, 1200])  # 1200 boxes = 4800 values: torchvision's per-category branch
def test_opencv_nms_equals_torchvision(n: int) -> None:
    rng = np.random.default_rng(n)
    xy = rng.integers(0, 200, (n, 2))
    boxes = np.concatenate([xy, xy + rng.integers(1, 60, (n, 2))], axis=1)  # x0, y0, x1, y1 (int, as masks give)
    scores = rng.permutation(n).astype(np.float32) / n  # no ties: the order is defined
    for thresh in (0.3, 0.7):
        ref = batched_nms(torch.as_tensor(boxes).float(), torch.as_tensor(scores), torch.zeros(n), thresh)
        assert U.nms(boxes, scores, thresh).tolist() == ref.tolist()


def test_encodings_grids_and_crops_equal_official() -> None:
    from sam2.utils import amg

    rng = np.random.default_rng(0)
    masks = rng.random((4, 37, 53)) > 0.6
    masks[1] = True  # starts with foreground
    masks[2] = False  # empty
    for mask, rle in zip(masks, amg.mask_to_rle_pytorch(torch.as_tensor(masks))):
        assert U.mask_to_rle(mask) == rle
        np.testing.assert_array_equal(U.rle_to_mask(rle), mask)
        assert U.coco_rle(mask) == amg.coco_encode_rle(rle)
        assert U.mask_box(mask) == tuple(amg.batched_mask_to_box(torch.as_tensor(mask[None]))[0].tolist())
    for args in ((32, 0, 1), (16, 2, 2), (5, 1, 2)):
        ref = amg.build_all_layer_point_grids(*args)
        assert all(np.array_equal(a, b) for a, b in zip(U.layer_point_grids(*args), ref, strict=True))
    for hw, layers, ratio in (((1200, 1800), 1, 512 / 1500), ((534, 800), 2, 0.2), ((720, 1280), 0, 0.3)):
        assert U.crop_boxes(hw, layers, ratio) == amg.generate_crop_boxes(hw, layers, ratio)
    low = torch.as_tensor(rng.standard_normal((3, 64, 64)).astype(np.float32))
    ref = torch.nn.functional.interpolate(low[None], (301, 457), mode="bilinear", align_corners=False)[0]
    masks, stability = U.upscale_masks(low.numpy(), (301, 457), 0.1, 0.5)
    np.testing.assert_array_equal(masks, (ref > 0.1).numpy())
    np.testing.assert_allclose(stability, amg.calculate_stability_score(ref, 0.1, 0.5).numpy(), atol=1e-6)


def test_remove_small_regions_hand_made() -> None:
    plane = np.full((12, 12), -1.0, np.float32)
    plane[1:9, 1:9] = 2.0
    plane[4, 4] = -3.0  # a 1-pixel hole
    plane[10:12, 10:12] = 1.0  # a 4-pixel island
    out = U.remove_small_regions(plane[None], 4)[0]
    assert out[4, 4] == 10.0 and (out[10:12, 10:12] == -10.0).all()
    assert (out[0] == -1.0).all() and out[2, 2] == 2.0  # the big background and mask stay
    assert np.array_equal(U.remove_small_regions(plane[None], 0)[0], plane)


@pytest.mark.parametrize("options, needle", [
    (dict(output_mode="png"), "output_mode must be one of"),
    (dict(points_per_side=None), "exactly one of points_per_side"),
    (dict(point_grids=[np.zeros((4, 2))]), "exactly one of points_per_side"),
    (dict(points_per_side=None, point_grids=[np.zeros((4, 2))], crop_n_layers=1), "one grid per crop layer"),
    (dict(points_per_batch=0), "points_per_batch must be a positive"),
    (dict(crop_n_layers=-1), "must be >= 0"),
])
def test_bad_options_raise_before_loading(options: dict, needle: str, tmp_path: Path) -> None:
    from sam2rt.errors import Sam2rtError

    with pytest.raises(Sam2rtError, match=needle):
        AutomaticMaskGenerator(tmp_path / "no-model", **options)


def test_bad_image_raises(exported_tiny_256: Path) -> None:
    from sam2rt.errors import Sam2rtError

    generator = AutomaticMaskGenerator(exported_tiny_256, points_per_side=2)
    for image in (np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), "truck.jpg"):
        with pytest.raises(Sam2rtError, match="RGB image"):
            generator.generate(image)
