"""How samurai_harness.FORCING is tuned for an image size (not a test; run by hand, ~1-3 min at 512 px):

    SAMURAI_TEST_SIZE=512 SAMURAI_TEST_STABLE=15 python tests/samurai/measure_forcing.py OUT CLIP FRAMES

Exports the forced model of conftest.samurai_model (FORCING[SIZE]) into OUT and tracks one click (the
parity tests' first click) with our VideoPredictor, memory="samurai", on the first FRAMES frames of
../shared/data/videos/CLIP.mp4; prints per frame the object score, the three multimask candidates'
predicted-IoU logits and boxes, SAMURAI's pick, the highest-IoU pick and the motion score, then the counts
the parity tests assert. Read the logits against FORCING's centres (logit = iou_scale * (w.x - wx) +
iou_offset) and the score against score_shift; retune, rerun.

What was found at 512 px (bedroom, 60 frames): the old centres, measured with the official predictor, sat
on an absent object's trajectory (SAMURAI tracks another one); random-weight masks cover the whole image,
so every candidate box is the full frame and the filter's IoU ties (weighted choice = highest IoU); zeroing
token 3's mask (an empty candidate) and re-centring gave 45 weighted choices, 26 of them not the highest IoU.
An object score that crosses 0 on the present trajectory (score_shift -1.7 or -2.3) drops to about -7..-12
within two frames and stays absent (no weighted choice differs), so 512 keeps the object present.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import CLIPS  # noqa: E402
from samurai_harness import SIZE, samurai_config  # noqa: E402
from test_samurai_parity import CLICKS  # noqa: E402

from sam2rt.runtime import memory_policy as MP  # noqa: E402
from sam2rt.runtime.predictor import VideoPredictor  # noqa: E402

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _model(out: Path) -> Path:
    import conftest

    class Factory:  # tmp_path_factory's one method the fixture uses
        def mktemp(self, name: str) -> Path:
            return out

    if not (out / "model").exists():
        conftest.samurai_model.__wrapped__(Factory())
    return out / "model"


def _frames(out: Path, clip: str, n: int) -> Path:
    import cv2

    folder = out / f"{clip}_{n}"
    if not folder.exists():
        folder.mkdir(parents=True)
        cap = cv2.VideoCapture(str(SHARED / CLIPS[clip]))
        for i in range(n):
            ok, frame = cap.read()
            assert ok, f"{clip} has fewer than {n} frames"
            cv2.imwrite(str(folder / f"{i:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return folder


def main(out: Path, clip: str, n: int) -> None:
    rows: list[dict] = []
    multimask, choose = MP.SamuraiMemory._multimask, MP.SamuraiMemory.choose

    def logged_multimask(self, track, cand, ious):
        boxes = [MP.mask_box(c, self.size) for c in cand]
        k, kf = multimask(self, track, cand, ious)
        rows[-1].update(logits=np.round(np.log(ious / (1 - ious)), 2).tolist(), boxes=boxes, k=k,
                        best=int(np.argmax(ious)), kf=kf)
        return k, kf

    def logged_choose(self, track, masks, ious, ptrs, score, *args):
        rows.append({"score": round(float(score), 2)})
        return choose(self, track, masks, ious, ptrs, score, *args)

    MP.SamuraiMemory._multimask, MP.SamuraiMemory.choose = logged_multimask, logged_choose
    vp = VideoPredictor(_model(out), fill_hole_area=0, progress=False, memory="samurai", samurai=samurai_config())
    state = vp.init_state(str(_frames(out, clip, n)))
    vp.add_new_points_or_box(state, 0, 1, points=np.array([CLICKS[clip][0]], np.float32),
                             labels=np.array([1], np.int32))
    for _ in vp.propagate_in_video(state):
        pass
    for f, row in enumerate(rows):
        print(f, row)
    weighted = [r for r in rows if r.get("kf") is not None]
    print(f"{SIZE} px {clip}: weighted {len(weighted)}, not the highest IoU "
          f"{sum(r['k'] != r['best'] for r in weighted)}, absent {sum(r['score'] <= -1 for r in rows)}, "
          f"mean logits {np.round(np.mean([r['logits'] for r in rows if 'logits' in r], 0), 2).tolist()}")


if __name__ == "__main__":
    pytest.importorskip("torch")
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
