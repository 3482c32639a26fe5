"""AutomaticMaskGenerator (ONNX Runtime) against the official SAM2AutomaticMaskGenerator (PyTorch), same weights.

The official module imports torchvision (no CPU build here) for ``batched_nms`` and ``box_area`` and, through
the image predictor, three transforms. While importing it, this test puts stand-ins in ``sys.modules``: the
transforms of test_image_predictor, and ``torchvision.ops.boxes`` written from torchvision's source
(pytorch/vision ``torchvision/ops/boxes.py`` and ``torchvision/csrc/ops/cpu/nms_kernel.cpp``, read at commits
01b12c6 and 01d5d10): ``batched_nms`` takes the coordinate trick up to 4000 box values on CPU, else NMS per
category with the kept indices sorted by score again; ``nms`` sorts the scores descending with the same
``sort(0, descending=True)`` call as the kernel, areas ``(x2 - x1) * (y2 - y1)``, and drops a box when
``inter / (area_i + area_j - inter) > iou_threshold``; ``box_area`` upcasts integer boxes to int32/int64 as
``_upcast``. Everything else is the official code, unmodified.

Seeded random weights predict IoUs near 0.5 and near-uniform low-contrast masks, so the options are set
for masks to survive (IoU threshold 0.45, stability offset 0.05); the generator then finds few distinct
boxes, so one case switches box NMS off (threshold 1.0: every surviving mask is compared) and the others
keep it on (the same survivor must win).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from test_image_predictor import SIZE, _Normalize, _Resize, _ToTensor

from sam2rt.runtime import amg_utils as U
from sam2rt.runtime.automatic import AutomaticMaskGenerator

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

MASK_IOU_MIN, SCORE_TOL = 0.999, 1e-4
SURVIVE = dict(pred_iou_thresh=0.45, stability_score_thresh=0.1, stability_score_offset=0.05)


# ---- torchvision stand-ins ------------------------------------------------------------------------------
def _tv_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    assert boxes.dtype == scores.dtype, "dets should have the same type as scores"
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64)
    x1, y1, x2, y2 = (boxes[:, i].contiguous() for i in range(4))
    areas = (x2 - x1) * (y2 - y1)
    order = scores.sort(0, descending=True)[1].tolist()
    suppressed, keep = [False] * len(order), []
    for _i, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        for j in order[_i + 1:]:
            if suppressed[j]:
                continue
            w = torch.clamp(torch.minimum(x2[i], x2[j]) - torch.maximum(x1[i], x1[j]), min=0)
            h = torch.clamp(torch.minimum(y2[i], y2[j]) - torch.maximum(y1[i], y1[j]), min=0)
            inter = w * h
            if float(inter / (areas[i] + areas[j] - inter)) > iou_threshold:
                suppressed[j] = True
    return torch.tensor(keep, dtype=torch.int64)


def _tv_batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor,
                    iou_threshold: float) -> torch.Tensor:
    if boxes.numel() > 4000:  # _batched_nms_vanilla
        keep_mask = torch.zeros_like(scores, dtype=torch.bool)
        for class_id in torch.unique(idxs):
            curr = torch.where(idxs == class_id)[0]
            keep_mask[curr[_tv_nms(boxes[curr], scores[curr], iou_threshold)]] = True
        keep = torch.where(keep_mask)[0]
        return keep[scores[keep].sort(descending=True)[1]]
    if boxes.numel() == 0:  # _batched_nms_coordinate_trick
        return torch.empty((0,), dtype=torch.int64)
    offsets = idxs.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))
    return _tv_nms(boxes + offsets[:, None], scores, iou_threshold)


def _tv_box_area(boxes: torch.Tensor) -> torch.Tensor:
    if boxes.is_floating_point():
        boxes = boxes if boxes.dtype in (torch.float32, torch.float64) else boxes.float()
    else:
        boxes = boxes if boxes.dtype in (torch.int32, torch.int64) else boxes.int()
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


@pytest.fixture(scope="module")
def official_cls() -> type:
    pytest.importorskip("sam2")
    fake = types.ModuleType("torchvision")
    fake.transforms = types.ModuleType("torchvision.transforms")
    fake.transforms.ToTensor, fake.transforms.Resize, fake.transforms.Normalize = _ToTensor, _Resize, _Normalize
    fake.ops = types.ModuleType("torchvision.ops")
    fake.ops.boxes = types.ModuleType("torchvision.ops.boxes")
    fake.ops.boxes.batched_nms, fake.ops.boxes.box_area = _tv_batched_nms, _tv_box_area
    added = {"torchvision": fake, "torchvision.transforms": fake.transforms, "torchvision.ops": fake.ops,
             "torchvision.ops.boxes": fake.ops.boxes}
    assert not set(added) & set(sys.modules), "a real torchvision is installed: use the official class directly"
    sys.modules.update(added)
    try:
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
    finally:
        for name in [*added, "sam2.utils.transforms", "sam2.sam2_image_predictor", "sam2.automatic_mask_generator"]:
            sys.modules.pop(name, None)
    return SAM2AutomaticMaskGenerator


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    from sam2rt.export.checkpoints import build_model

    return build_model("sam2.1_hiera_tiny", SIZE, random_seed=0)[0]  # the weights of exported_tiny_256


@pytest.fixture(scope="module")
def images(shared_data: Path) -> dict[str, np.ndarray]:
    import cv2

    out = {n: np.array(Image.open(shared_data / "images" / f"{n}.jpg").convert("RGB")) for n in ("truck", "groceries")}
    capture = cv2.VideoCapture(str(shared_data / "videos" / "cups.mp4"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 30)
    ok, bgr = capture.read()
    capture.release()
    assert ok, "cannot read a frame of cups.mp4"
    out["cups frame 30"] = bgr[:, :, ::-1].copy()  # a video frame: not one of the images the other tests use
    return out


# ---- comparison ---------------------------------------------------------------------------------------
def _official_generator(cls: type, model: torch.nn.Module, **options: Any) -> Any:
    gen = cls(model, **options)
    h = SIZE // 16
    gen.predictor._bb_feat_sizes = [(4 * h, 4 * h), (2 * h, 2 * h), (h, h)]  # hard-coded for 1024 px
    return gen


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


CASES = {  # image, options: no NMS (every survivor compared); NMS with crops and m2m; RLE outputs
    "truck, no NMS": ("truck", dict(points_per_side=4, box_nms_thresh=1.0, **SURVIVE)),
    "groceries, crops": ("groceries", dict(points_per_side=6, crop_n_layers=1, crop_n_points_downscale_factor=2,
                                           output_mode="coco_rle", **SURVIVE)),
    "cups frame, crops + m2m": ("cups frame 30", dict(points_per_side=4, crop_n_layers=1, use_m2m=True,
                                                      crop_n_points_downscale_factor=2, box_nms_thresh=1.0,
                                                      crop_nms_thresh=1.0, mask_threshold=0.05,
                                                      output_mode="uncompressed_rle", **SURVIVE)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_parity_with_official(case, exported_tiny_256, official_cls, model, images) -> None:
    image, options = CASES[case]
    ours = AutomaticMaskGenerator(exported_tiny_256, **options).generate(images[image])
    with torch.inference_mode():
        ref = _official_generator(official_cls, model, **options).generate(images[image])
    assert ref, f"{case}: the official generator found no mask; the comparison would prove nothing"
    _compare(ours, ref, case)
