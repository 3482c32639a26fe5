"""Peak memory of the prompt sizes that ran away before the limits of issue 20: many clicks, boxes, objects.

``python -m sam2rt.benchmarks.prompt_limits --model DIR`` runs each case in a fresh process and reports its
peak RSS (``ru_maxrss``) next to the same process's RSS after loading the model:

- ``points``: 10 000 clicks on one object (VideoPredictor; refused: the model's ``max_points``);
- ``boxes``: 1 000 boxes in one ``ImagePredictor.predict`` (decoded ``max_objects`` at a time), and the same
  call in one decoder batch (``--unchunked``, what the predictor did before) for comparison;
- ``objects``: 300 objects on one frame (VideoPredictor; refused past the model's ``max_objects``).

The image is 128x96, so the 1 000 output masks themselves (float32, as the official API returns) are 49 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_case(model: str, case: str, unchunked: bool) -> dict:
    """One case in this process: {'case', 'loaded_mb', 'peak_mb', 'seconds', 'outcome'}."""
    from sam2rt.errors import Sam2rtError

    rgb = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    if case == "boxes":
        from sam2rt.runtime.image_predictor import ImagePredictor

        predictor = ImagePredictor(model)
        predictor.set_image(rgb)
        if unchunked:
            predictor.chunk = 10**9
        loaded, t0 = _rss_mb(), time.perf_counter()
        rng = np.random.default_rng(1)
        x0, y0 = rng.uniform(0, 60, 1000), rng.uniform(0, 40, 1000)
        boxes = np.stack([x0, y0, x0 + 30, y0 + 30], axis=1)
        masks, _, _ = predictor.predict(box=boxes, multimask_output=False)
        outcome = f"masks {masks.shape}"
    else:
        from sam2rt.runtime.predictor import VideoPredictor

        predictor = VideoPredictor(model, progress=False)
        state = predictor.init_state([rgb, rgb])
        loaded, t0 = _rss_mb(), time.perf_counter()
        try:
            if case == "points":
                pts = np.random.default_rng(2).uniform(0, 90, (10_000, 2))
                predictor.add_new_points_or_box(state, 0, 1, points=pts, labels=np.ones(10_000, np.int32))
            else:
                for obj_id in range(300):
                    predictor.add_new_points_or_box(state, 0, obj_id, points=[[10 + obj_id % 100, 50]], labels=[1])
            outcome = "accepted"
        except Sam2rtError as e:
            outcome = f"refused after {len(state['obj_ids'])} objects: {str(e)[:70]}..."
    return {"case": case + (" (one batch)" if unchunked else ""), "image_size": predictor.image_size,
            "loaded_mb": round(loaded, 1), "peak_mb": round(_rss_mb(), 1),
            "seconds": round(time.perf_counter() - t0, 2), "outcome": outcome, "loadavg": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--case", choices=("points", "boxes", "objects"), default=None, help="(internal) one case here")
    p.add_argument("--unchunked", action="store_true", help="boxes: one decoder batch, as before the limits")
    p.add_argument("--skip-unchunked", action="store_true",
                   help="leave out the one-batch boxes run (about 13 GB at 1024 px)")
    args = p.parse_args(argv)
    if args.case is not None:
        print(json.dumps(run_case(args.model, args.case, args.unchunked)))
        return 0
    runs = [("points", []), ("boxes", []), ("boxes", ["--unchunked"]), ("objects", [])]
    for case, extra in [r for r in runs if not (args.skip_unchunked and r[1])]:
        done = subprocess.run([sys.executable, "-m", "sam2rt.benchmarks.prompt_limits", "--model", args.model,
                               "--case", case, *extra], capture_output=True, text=True, check=True)
        print(done.stdout.strip().splitlines()[-1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
