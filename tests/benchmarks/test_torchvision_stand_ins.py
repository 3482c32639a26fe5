"""The torchvision stand-ins of ``benchmarks/official_everything`` against torchvision's own code.

torchvision cannot be installed here (its PyPI wheels link CUDA torch), so this test runs torchvision's source:
its CPU NMS kernel (``torchvision/csrc/ops/cpu/nms_kernel.cpp``) compiled with ``torch.utils.cpp_extension``
beside a one-line schema for ``torchvision::nms``, and the Python functions ``batched_nms`` (both strategies),
``nms`` and ``box_area`` executed from ``torchvision/ops/boxes.py`` (only those function definitions; the
helpers they call for logging and scripting are no-ops). Set ``SAM2RT_TORCHVISION_SRC`` to a folder holding
both files (a pytorch/vision checkout, or its ``ops/`` from a wheel plus ``csrc/`` from the repository); without
it the test skips. Needs a C++ compiler and ninja (about 1 to 2 minutes to build).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sam2rt.benchmarks import official_everything as stand_in  # noqa: E402
from sam2rt.runtime import amg_utils as U  # noqa: E402

SRC = os.environ.get("SAM2RT_TORCHVISION_SRC")
pytestmark = pytest.mark.skipif(not SRC, reason="set SAM2RT_TORCHVISION_SRC to a torchvision source tree "
                                                "(torchvision/ops/boxes.py, torchvision/csrc/ops/cpu/nms_kernel.cpp)")

SCHEMA = ('#include <torch/library.h>\nTORCH_LIBRARY_FRAGMENT(torchvision, m) {\n'
          '  m.def("torchvision::nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor");\n}\n')


@pytest.fixture(scope="module")
def torchvision_ops(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """torchvision's ``batched_nms``, ``nms`` and ``box_area``, run from its source, on its compiled CPU kernel."""
    from torch.utils import cpp_extension

    root = Path(SRC) / "torchvision"
    build = tmp_path_factory.mktemp("tv_nms")
    (build / "schema.cpp").write_text(SCHEMA)
    if not hasattr(torch.ops.torchvision, "nms"):
        cpp_extension.load(name="tv_nms_from_source", sources=[str(build / "schema.cpp"),
                                                               str(root / "csrc/ops/cpu/nms_kernel.cpp")],
                           build_directory=str(build), is_python_module=False, extra_cflags=["-O2"])
    namespace: dict[str, Any] = {
        "torch": torch, "Tensor": torch.Tensor, "torchvision": SimpleNamespace(_is_tracing=lambda: False),
        "_log_api_usage_once": lambda *a: None, "_assert_has_ops": lambda: None}
    wanted = {"ops/_utils.py": {"_upcast"}, "ops/boxes.py": {"nms", "batched_nms", "_batched_nms_coordinate_trick",
                                                              "_batched_nms_vanilla", "box_area"}}
    for path, names in wanted.items():
        tree = ast.parse((root / path).read_text())
        defs = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in names]
        assert {d.name for d in defs} == names, f"torchvision/{path} no longer defines {sorted(names)}"
        exec(compile(ast.Module(body=defs, type_ignores=[]), str(root / path), "exec"), namespace)
    wanted = {"nms", "batched_nms", "box_area"}
    return SimpleNamespace(**{name: namespace[name] for name in wanted})


def _cases(seed: int, n: int, ties: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer boxes as masks give them (many overlaps), scores with or without ties, 1 to 5 categories."""
    rng = np.random.default_rng(seed)
    xy = rng.integers(0, 120, (n, 2))
    boxes = np.concatenate([xy, xy + rng.integers(0, 80, (n, 2))], axis=1)  # 0: one-pixel-wide masks
    scores = rng.integers(0, 6, n) / 5 if ties else rng.random(n)  # ties: crop-NMS scores are 1 / crop area
    idxs = rng.integers(0, 1 + seed % 5, n)
    return (torch.as_tensor(boxes, dtype=torch.float32), torch.as_tensor(scores, dtype=torch.float32),
            torch.as_tensor(idxs))


@pytest.mark.parametrize("n", [0, 1, 7, 60, 400, 1001, 1500])  # > 1000 boxes: torchvision's per-category branch
@pytest.mark.parametrize("ties", [False, True])
def test_batched_nms_and_nms_equal_torchvision(torchvision_ops: SimpleNamespace, n: int, ties: bool) -> None:
    for seed in range(4):
        boxes, scores, idxs = _cases(seed + n, n, ties)
        for thresh in (0.0, 0.3, 0.5, 0.7, 1.0):
            ref_nms = torchvision_ops.nms(boxes, scores, thresh)
            assert stand_in.nms(boxes, scores, thresh).tolist() == ref_nms.tolist(), (n, ties, seed, thresh)
            if thresh != 0.3:  # OpenCV's IoU is double, torchvision's float32: an IoU of exactly 3/10 is 0.3
                # for OpenCV (kept) and float32(0.3) > 0.3 for torchvision (dropped); see amg_utils.nms
                ours = U.nms(boxes.numpy(), scores.numpy(), thresh)  # OpenCV's NMSBoxes, one category
                assert ours.tolist() == ref_nms.tolist(), (n, ties, seed, thresh)
            ref = torchvision_ops.batched_nms(boxes, scores, idxs, thresh)
            got = stand_in.batched_nms(boxes, scores, idxs, thresh)
            assert got.tolist() == ref.tolist(), (n, ties, seed, thresh)


def test_box_area_equal_torchvision(torchvision_ops: SimpleNamespace) -> None:
    boxes = torch.tensor([[0, 0, 10, 5], [3, 4, 3, 9], [1, 2, 7, 30]])
    for dtype in (torch.uint8, torch.int16, torch.int32, torch.int64, torch.float16, torch.float32, torch.float64):
        ref: Callable = torchvision_ops.box_area
        got, want = stand_in.box_area(boxes.to(dtype)), ref(boxes.to(dtype))
        assert got.dtype == want.dtype and got.tolist() == want.tolist(), dtype
