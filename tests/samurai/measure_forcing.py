"""How conftest.py's WX / SCORE_SHIFT are measured for an image size (not a test; run by hand):

    python tests/samurai/measure_forcing.py SIZE ../shared/data/videos/bedroom_frames 12

The seeded tiny model at SIZE with conftest's object-score scaling (weights and bias x1000, bias -160) tracks
one click on the bedroom frames with the official predictor; printed are the IoU head's w.x per candidate
(before its bias: WX[SIZE]) and the tracked object's score logits (SCORE_SHIFT[SIZE] = minus their mean, so
the score swings around 0 and -1). 256 px: WX [0.1182, 0.0953, -0.0351, 0.1309], score ~1.5; 512 px:
WX [0.1206, 0.0976, -0.0383, 0.1313] (spread <= 0.001), score -7.48 (std 1.31).
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from sam2rt.export.checkpoints import build_model


def main(size: int, frames: str, n: int) -> None:
    model, _ = build_model("sam2.1_hiera_tiny", size, random_seed=0)
    score = model.sam_mask_decoder.pred_obj_score_head.layers[-1]
    iou = model.sam_mask_decoder.iou_prediction_head.layers[-1]
    with torch.no_grad():
        score.weight.mul_(1000.0)
        score.bias.mul_(1000.0).sub_(160.0)
    wx, sc = [], []
    iou.register_forward_hook(lambda m, i, o: wx.append((i[0] @ m.weight.T).detach().numpy().reshape(-1, 4)))
    score.register_forward_hook(lambda m, i, o: sc.append(o.detach().numpy().reshape(-1)))
    state = model.init_state(frames)
    with torch.inference_mode():
        model.add_new_points_or_box(state, 0, 1, points=np.array([[600, 300]], np.float32),
                                    labels=np.array([1], np.int32))
        wx.clear()
        sc.clear()
        for _ in model.propagate_in_video(state, max_frame_num_to_track=n):
            pass
    w, s = np.concatenate(wx), np.concatenate(sc)
    print("WX", np.round(w.mean(0), 4).tolist(), "spread", np.round(w.std(0), 4).tolist())
    print("score mean", float(s.mean()), "std", float(s.std()))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
