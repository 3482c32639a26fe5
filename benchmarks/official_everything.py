"""The official ``SAM2AutomaticMaskGenerator`` without torchvision, for parity tests and the benchmark.

``sam2.automatic_mask_generator`` imports ``batched_nms`` and ``box_area`` from torchvision and its image
predictor imports three transforms; torchvision has no CPU build on these machines. ``official_generator_cls``
imports the official module (unmodified) with stand-ins in ``sys.modules`` that do what torchvision does on
CPU tensors, then removes them again. Written from torchvision's source (pytorch/vision
``torchvision/ops/boxes.py``, ``torchvision/csrc/ops/cpu/nms_kernel.cpp``, ``transforms/_functional_tensor.py``):

- ``batched_nms``: the coordinate trick up to 4000 box values on CPU (boxes offset per category, then ``nms``),
  else ``nms`` per category with the kept indices sorted by score again (``_batched_nms_vanilla``);
- ``nms`` (the CPU kernel): order = ``scores.sort(stable=True, dim=0, descending=True)`` (stable since
  torchvision 0.12, pull request 4767: equal scores keep their index order), areas ``(x2 - x1) * (y2 - y1)``,
  a box is suppressed when ``inter / (area_i + area_j - inter) > threshold`` against a kept one (float ratio
  compared in double); returns kept indices, best first;
- ``box_area``: integer boxes upcast to int32/int64 as ``_upcast``, then ``(x2 - x1) * (y2 - y1)``;
- ``ToTensor`` (HWC uint8 -> CHW float32 / 255), ``Resize((S, S))`` (identity at that size, else bilinear,
  align_corners=False, antialias=True), ``Normalize`` ((x - mean) / std), as tests/runtime/test_image_predictor.
``tests/benchmarks/test_torchvision_stand_ins.py`` checks ``nms``, ``batched_nms`` and ``box_area`` against
torchvision's own code (its Python functions and its CPU kernel compiled from source) where a torchvision source
tree is given. Needs torch and the official ``sam2`` (the export extra).
"""

from __future__ import annotations

import sys
import types
from typing import Any

import torch
import torch.nn.functional as F


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """torchvision's CPU ``nms`` kernel, (N, 4) float boxes, (N,) scores of the same dtype -> kept int64 indices."""
    assert boxes.dtype == scores.dtype, "dets should have the same type as scores"
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64)
    x1, y1, x2, y2 = (boxes[:, i].contiguous() for i in range(4))
    areas = (x2 - x1) * (y2 - y1)
    order = scores.sort(stable=True, dim=0, descending=True)[1]
    suppressed, keep = torch.zeros(len(order), dtype=torch.bool), []
    for pos, i in enumerate(order.tolist()):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[pos + 1:]  # the kernel's inner loop over j, as one elementwise float computation
        w = torch.clamp(torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest]), min=0)
        h = torch.clamp(torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest]), min=0)
        inter = w * h
        ovr = inter / (areas[i] + areas[rest] - inter)
        suppressed[rest[ovr.double() > iou_threshold]] = True  # a suppressed j stays suppressed
    return torch.tensor(keep, dtype=torch.int64)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """torchvision's ``batched_nms`` on CPU (both of its strategies)."""
    if boxes.numel() > 4000:  # _batched_nms_vanilla
        keep_mask = torch.zeros_like(scores, dtype=torch.bool)
        for class_id in torch.unique(idxs):
            curr = torch.where(idxs == class_id)[0]
            keep_mask[curr[nms(boxes[curr], scores[curr], iou_threshold)]] = True
        keep = torch.where(keep_mask)[0]
        return keep[scores[keep].sort(descending=True)[1]]
    if boxes.numel() == 0:  # _batched_nms_coordinate_trick
        return torch.empty((0,), dtype=torch.int64)
    offsets = idxs.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """torchvision's ``box_area`` (with ``_upcast``)."""
    if boxes.is_floating_point():
        boxes = boxes if boxes.dtype in (torch.float32, torch.float64) else boxes.float()
    else:
        boxes = boxes if boxes.dtype in (torch.int32, torch.int64) else boxes.int()
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


class ToTensor:
    def __call__(self, pic: Any) -> torch.Tensor:
        img = torch.from_numpy(pic.transpose((2, 0, 1))).contiguous()
        return img.to(dtype=torch.float32).div(255) if img.dtype == torch.uint8 else img


class Resize(torch.nn.Module):
    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = [int(size[0]), int(size[1])]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if [img.shape[-2], img.shape[-1]] == self.size:
            return img
        return F.interpolate(img[None], size=self.size, mode="bilinear", align_corners=False, antialias=True)[0]


class Normalize(torch.nn.Module):
    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(-1, 1, 1))

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.clone().sub_(self.mean).div_(self.std)


def official_generator_cls() -> type:
    """``sam2.automatic_mask_generator.SAM2AutomaticMaskGenerator``, imported with the stand-ins."""
    fake = types.ModuleType("torchvision")
    fake.transforms = types.ModuleType("torchvision.transforms")
    fake.transforms.ToTensor, fake.transforms.Resize, fake.transforms.Normalize = ToTensor, Resize, Normalize
    fake.ops = types.ModuleType("torchvision.ops")
    fake.ops.boxes = types.ModuleType("torchvision.ops.boxes")
    fake.ops.boxes.batched_nms, fake.ops.boxes.box_area = batched_nms, box_area
    added = {"torchvision": fake, "torchvision.transforms": fake.transforms, "torchvision.ops": fake.ops,
             "torchvision.ops.boxes": fake.ops.boxes}
    if set(added) & set(sys.modules):
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator  # a real torchvision is there

        return SAM2AutomaticMaskGenerator
    sys.modules.update(added)
    try:
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
    finally:
        for name in [*added, "sam2.utils.transforms", "sam2.sam2_image_predictor", "sam2.automatic_mask_generator"]:
            sys.modules.pop(name, None)
    return SAM2AutomaticMaskGenerator


def official_generator(cls: type, model: torch.nn.Module, image_size: int, **options: Any) -> Any:
    """An official generator on ``model``; ``_bb_feat_sizes`` (hard-coded for 1024 px) set for ``image_size``."""
    gen = cls(model, **options)
    h = image_size // 16
    gen.predictor._bb_feat_sizes = [(4 * h, 4 * h), (2 * h, 2 * h), (h, h)]
    return gen
