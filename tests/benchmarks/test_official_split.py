"""``split_objects``: one session with two objects and two one-object sessions (EdgeTAM's official predictor,
upstream EdgeTAM#15) give rows that pair one to one, each holding its own object's mask."""

from __future__ import annotations

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sam2rt.benchmarks.official import _row_order, split_objects

CLICKS = [(1, [10.0, 10.0]), (2, [20.0, 20.0])]


def _mask(obj: int, frame: int) -> np.ndarray:
    return np.full((1, 1, 2, 2), 10 * obj + frame, np.float32)


def test_joint_and_per_object_sessions_pair_up() -> None:
    joint = [("0:points", 0, [1], _mask(1, 0)), ("1:points", 0, [1, 2], np.concatenate([_mask(1, 0), _mask(2, 0)]))]
    joint += [("2:propagate", f, [1, 2], np.concatenate([_mask(1, f), _mask(2, f)])) for f in range(3)]
    alone = []
    for obj, xy in CLICKS:
        session = [("0:points", 0, [obj], _mask(obj, 0))]
        session += [("1:propagate", f, [obj], _mask(obj, f)) for f in range(3)]
        alone += split_objects(session, [(obj, xy)])
    ours, theirs = split_objects(joint, CLICKS), sorted(alone, key=_row_order)
    assert [(s, f, ids) for s, f, ids, _ in ours] == [(s, f, ids) for s, f, ids, _ in theirs]
    assert len(ours) == 2 + 2 * 3 and ours[0][:3] == ("points", 0, [1]) and ours[1][:3] == ("points", 0, [2])
    for (_, f, ids, a), (_, _, _, b) in zip(ours, theirs):
        assert a.shape == (1, 1, 2, 2) and np.all(a == 10 * ids[0] + f) and np.array_equal(a, b)


class _BusyPredictor:
    """The official API on three frames, each call spending CPU time (as a real predictor does)."""

    def _burn(self) -> None:
        end = time.process_time() + 0.02
        while time.process_time() < end:
            pass

    def init_state(self, video: str) -> dict:
        self._burn()
        return {}

    def add_new_points_or_box(self, state: dict, frame: int, obj: int, points: list, labels: list) -> tuple:
        self._burn()
        return frame, [obj], torch.zeros(1, 1, 2, 2)

    def propagate_in_video(self, state: dict):
        for f in range(3):
            self._burn()
            yield f, [1], torch.zeros(1, 1, 2, 2)


def test_one_state_per_object_sums_every_session_including_cpu_time() -> None:
    from sam2rt.benchmarks.official import official_session

    run = official_session(_BusyPredictor(), "frames/", CLICKS, per_object=True)
    assert run.total_s >= 2 * 5 * 0.02 * 0.9  # two sessions of five calls each
    assert run.cpu_s >= 2 * 5 * 0.02 * 0.9  # the CPU time of both sessions, not 0 (the bench printed 0.000)
