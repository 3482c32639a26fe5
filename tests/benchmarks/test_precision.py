"""precision-report arithmetic: relative/max errors (absent-object logits ignored), latency, the tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sam2rt import contract as C
from sam2rt.benchmarks.precision import (VariantResult, format_markdown, graph_errors, graph_latency,
                                        interleaved_latency)
from sam2rt.runtime.backends import GraphRunner

SIZE = 128


class _Scaled(GraphRunner):
    """Every output = scale * (sum of the float feeds' first element) + offset, broadcast to its shape."""

    def __init__(self, spec: C.GraphSpec, scale: float, absent: bool = False) -> None:
        super().__init__(spec, SIZE)
        self.scale, self.absent = scale, absent

    def _run(self, feeds, out):
        base = sum(float(a.reshape(-1)[0]) for a in feeds.values() if a.dtype == np.float32) + 1.0
        shapes = self.output_shapes(feeds)
        result = {n: np.full(s, base * self.scale, np.float32) for n, s in shapes.items()}
        if self.absent and "low_res_masks" in result:
            result["low_res_masks"][..., :2, :] = C.NO_OBJ_SCORE * (2.0 if self.scale != 1.0 else 1.0)
        return result


def _feeds(spec: C.GraphSpec, value: float) -> dict[str, np.ndarray]:
    dims = {**C.resolve_dims(SIZE), "B": 1, "N": 1, "M": 1, "P": 1}
    return {t.name: np.full(t.resolve(dims), value, np.dtype(t.dtype)) for t in spec.inputs}


@pytest.fixture()
def samples() -> dict[str, list]:
    return {s.name: [_feeds(s, v) for v in (0.0, 1.0, 2.0)] for s in C.GRAPHS}


def test_relative_and_max_error(samples) -> None:
    reference = {s.name: _Scaled(s, 1.0) for s in C.GRAPHS}
    ours = {s.name: _Scaled(s, 1.01) for s in C.GRAPHS}
    rel, mx = graph_errors(reference, ours, samples)
    assert rel == pytest.approx({s.name: 0.01 for s in C.GRAPHS}, rel=1e-4)
    assert mx["image_encoder"] == pytest.approx(0.01 * (2.0 + 1.0), rel=1e-4)  # the largest sample
    assert graph_errors(reference, reference, samples)[0] == {s.name: 0.0 for s in C.GRAPHS}


def test_absent_object_logits_do_not_count(samples) -> None:
    reference = {s.name: _Scaled(s, 1.0, absent=True) for s in C.GRAPHS}
    ours = {s.name: _Scaled(s, 1.0 + 1e-3, absent=True) for s in C.GRAPHS}
    rel, mx = graph_errors(reference, ours, samples)
    assert mx["mask_decoder"] < 0.1  # -1024 vs -2048 where the object is absent is not an error


def test_latency_and_tables(samples, tmp_path: Path) -> None:
    runners = {s.name: _Scaled(s, 1.0) for s in C.GRAPHS}
    latency = graph_latency(runners, samples, calls=2)
    assert set(latency) == {s.name for s in C.GRAPHS} and all(v >= 0 for v in latency.values())
    both = interleaved_latency([runners, {s.name: _Scaled(s, 2.0) for s in C.GRAPHS}], samples, calls=2)
    assert len(both) == 2 and all(set(b) == set(latency) for b in both)
    r = VariantResult(tmp_path / "tiny_int8", "int8", {s.name: "int8" for s in C.GRAPHS},
                      rel_error={s.name: 0.02 for s in C.GRAPHS}, max_abs={s.name: 0.5 for s in C.GRAPHS},
                      latency_ms={s.name: 10.0 for s in C.GRAPHS}, mean_iou=0.975, min_iou=0.97, masks=83,
                      mean_iou_present=0.98, presence_disagreements=1)
    table = format_markdown([r])
    assert "| int8 | image_encoder (vision_feat) | int8 | 2.00e-02 | 5.00e-01 | 10.0 |" in table
    assert "| int8 | tiny_int8 | 83 | 0.9750 | 0.9700 | 0.9800 | 1 | 40 |" in table


def test_presence_disagreements_are_counted_apart() -> None:
    from sam2rt.benchmarks.parity import compare

    on, off = np.full((1, 1, 4, 4), 5.0, np.float32), np.full((1, 1, 4, 4), -1024.0, np.float32)
    half = on.copy()
    half[..., :2] = -3.0
    reference = [("p", 0, [1], on), ("p", 1, [1], on), ("p", 2, [1], off), ("p", 3, [1], off)]
    ours = [("p", 0, [1], half), ("p", 1, [1], off), ("p", 2, [1], off), ("p", 3, [1], on)]
    report = compare(reference, ours)
    assert report.ious.tolist() == [0.5, 0.0, 1.0, 0.0]  # both absent is a match; a flip is IoU 0
    assert report.presence_disagreements == 2
    assert report.mean_iou_both_present == 0.5 and report.mean_iou == 0.375
    assert "presence disagreements 2" in report.summary()
