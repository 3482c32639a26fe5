"""precision-report arithmetic: relative/max errors (absent-object logits ignored), latency, the tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sam2rt import contract as C
from sam2rt.benchmarks.precision import VariantResult, format_markdown, graph_errors, graph_latency
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
    r = VariantResult(tmp_path / "tiny_int8", "int8", {s.name: "int8" for s in C.GRAPHS},
                      rel_error={s.name: 0.02 for s in C.GRAPHS}, max_abs={s.name: 0.5 for s in C.GRAPHS},
                      latency_ms={s.name: 10.0 for s in C.GRAPHS}, mean_iou=0.975, min_iou=0.97, masks=83)
    table = format_markdown([r])
    assert "| int8 | image_encoder (vision_feat) | int8 | 2.00e-02 | 5.00e-01 | 10.0 |" in table
    assert "| int8 | tiny_int8 | 83 | 0.9750 | 0.9700 | 40 |" in table
