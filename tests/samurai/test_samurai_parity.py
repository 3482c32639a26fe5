"""memory="samurai" against SAMURAI's own predictor (its venv, a subprocess), frame by frame.

Every frame: mask IoU >= 0.999 at video resolution, and the same memory frames read by attention (the
conditioning frames and the remembered ones). Objects are independent, so several objects tracked together
equal the reference run once per object. The model is forced so the branches matter (conftest.py), and the
tests check they were taken: candidates chosen with the filter (at 512 px: a different one than the highest
predicted IoU), frames the memory rules rejected, absences. Each test prints what it exercised (``-s``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from samurai_harness import FORCING, FRAMES, SIZE, mask_iou, samurai_config  # noqa: E402  (tests/samurai is on sys.path)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# clicks (x, y) in video pixels; FIX: the correction click of the live test's second object
CLICKS = {"bedroom": [(600, 300), (250, 180)], "dog": [(640, 360), (300, 500)]}
FIX = {"bedroom": (270, 200), "dog": (330, 470)}


def _prompt(frame: int, xy: tuple[int, int]) -> dict:
    return {"frame": frame, "points": [list(xy)], "labels": [1]}


def _record_fill(monkeypatch) -> dict[tuple[int, int], list[int]]:
    """(object row in the batch call, frame) -> frames whose memory ``BankInputs.fill`` put in the slots."""
    from sam2rt.runtime import bank as B

    reads: dict[tuple[int, int], list[int]] = {}
    fill = B.BankInputs.fill

    def recording(self, b, frame_idx, outputs, *args, **kwargs):
        fill(self, b, frame_idx, outputs, *args, **kwargs)
        held = [self.memory[s, b].view(np.uint32) >> 16 for s in range(int(self.used_memory[b]))]
        reads[(id(outputs), frame_idx)] = sorted(
            t for t, o in {**outputs.non_cond, **outputs.cond}.items()
            if o.memory is not None and any(np.array_equal(h, o.memory.astype(np.uint32)) for h in held))

    monkeypatch.setattr(B.BankInputs, "fill", recording)
    return reads


def _record_choices(monkeypatch) -> dict[str, int]:
    """Counters of SAMURAI's decisions on our side: "weighted" (the filter's box IoU took part in the
    choice), "differs" (and the pick is not the highest predicted IoU), "absent" (object score at or below
    ``min_obj_score``); over every object and frame decided."""
    from sam2rt.runtime.memory_policy import SamuraiMemory

    seen = {"weighted": 0, "differs": 0, "absent": 0}
    multimask, choose = SamuraiMemory._multimask, SamuraiMemory.choose

    def recording_multimask(self, track, cand, ious):
        k, kf_score = multimask(self, track, cand, ious)
        if kf_score is not None:
            seen["weighted"] += 1
            seen["differs"] += int(k != int(np.argmax(ious)))
        return k, kf_score

    def recording_choose(self, track, masks, ious, ptrs, score, *args):
        seen["absent"] += int(np.float32(score) <= np.float32(self.cfg.min_obj_score))
        return choose(self, track, masks, ious, ptrs, score, *args)

    monkeypatch.setattr(SamuraiMemory, "_multimask", recording_multimask)
    monkeypatch.setattr(SamuraiMemory, "choose", recording_choose)
    return seen


def _compare(ours: dict[int, np.ndarray], our_memory: dict[int, list[int]], ref: dict, first: int = 0,
             prompts: tuple[int, ...] = ()) -> dict:
    """Per-frame checks from frame ``first`` (``prompts``: later prompt frames); returns what was compared and
    exercised: IoUs, frames left out of the default window, frames the memory rules rejected (t not read
    on t + 2, where a remembered t is the newest remembered frame), empty reference masks."""
    ious = [mask_iou(ours[f], ref["masks"][f]) for f in range(first, FRAMES)]
    assert min(ious) >= 0.999, f"mask IoU {min(ious):.5f} below 0.999"
    for f in range(first + 1, FRAMES):
        want = [int(x) for x in ref["memory"][f] if x >= 0]
        assert our_memory[f] == want, f"frame {f}: memory frames {our_memory[f]}, reference {want}"
    default = {f: sorted({first} | set(range(max(first, f - 6), f))) for f in range(first + 1, FRAMES)}
    return {"frames": FRAMES - first, "min_iou": min(ious), "mean_iou": float(np.mean(ious)),
            "left_out": sum(our_memory[f] != default[f] for f in default),
            "rejected": sum(t not in our_memory[t + 2] for t in range(first + 2, FRAMES - 2) if t not in prompts),
            "empty": sum(not ref["masks"][f].any() for f in range(first, FRAMES)),
            "present": sum(ref["masks"][f].any() for f in range(first, FRAMES))}


def _report(what: str, runs: list[dict], choices: dict[str, int]) -> None:
    """One line of what a test compared and exercised (docs/tracker.md quotes it)."""
    per = "; ".join(f"{r['frames']} frames, IoU min {r['min_iou']:.5f} mean {r['mean_iou']:.5f}, memory frames "
                    f"equal, rejected {r['rejected']}, empty {r['empty']}" for r in runs)
    print(f"\n[samurai parity {SIZE} px] {what}: {per}; choices {choices}")


def _run_predictor(model_dir: Path, frames: Path, clicks: list, monkeypatch):
    from sam2rt.runtime.predictor import VideoPredictor

    reads = _record_fill(monkeypatch)
    choices = _record_choices(monkeypatch)
    vp = VideoPredictor(model_dir, fill_hole_area=0, progress=False, memory="samurai", samurai=samurai_config())
    state = vp.init_state(str(frames))
    masks: dict[int, dict[int, np.ndarray]] = {k: {} for k in range(len(clicks))}
    for k, xy in enumerate(clicks):
        _, _, logits = vp.add_new_points_or_box(state, 0, k + 1, points=np.array([xy], np.float32),
                                                labels=np.array([1], np.int32))
    for k in range(len(clicks)):
        masks[k][0] = logits[k, 0] > 0
    for f, _, logits in vp.propagate_in_video(state):
        for k in range(len(clicks)):
            masks[k][f] = logits[k, 0] > 0
    memory = {k: {f: reads[(id(state["output_dict_per_obj"][k]), f)] for f in range(1, FRAMES)}
              for k in range(len(clicks))}
    return masks, memory, choices


@pytest.mark.parametrize("clip", ["bedroom", "dog"])
def test_video_predictor_matches_samurai(samurai_model, clips, reference, clip, monkeypatch) -> None:
    """One object (the reference's case) on each clip; on the dog clip a second object is tracked in the
    same batch and matches the reference run on that object alone."""
    model_dir, _ = samurai_model
    clicks = CLICKS[clip] if clip == "dog" else CLICKS[clip][:1]
    masks, memory, choices = _run_predictor(model_dir, clips[clip], clicks, monkeypatch)
    runs = [_compare(masks[k], memory[k], reference(clip, [_prompt(0, xy)])) for k, xy in enumerate(clicks)]
    _report(f"VideoPredictor {clip}, {len(clicks)} object(s)", runs, choices)
    # the forced model takes SAMURAI's branches: the filter scores candidates once the track is stable (and
    # picks another than the highest IoU where a candidate's box differs), frames are kept out of the memory
    assert choices["weighted"] > 0 and (choices["differs"] > 0 or clip not in FORCING[SIZE]["differs_on"]), choices
    assert sum(r["left_out"] for r in runs) > 0 and sum(r["present"] for r in runs) > 0, runs
    assert choices["absent"] + sum(r["empty"] for r in runs) > 0, (choices, runs)


def _record_prepare(monkeypatch, tracker) -> dict[tuple[int, int], list[int]]:
    """(object id, frame) -> frames whose memory slots a tracking step's attention reads."""
    from sam2rt.runtime.policy_bank import PolicyBank

    reads: dict[tuple[int, int], list[int]] = {}
    prepare = PolicyBank.prepare

    def recording(self, frame_idx, out, objects=None):
        prepare(self, frame_idx, out, objects)
        if objects is not None:
            return  # a prompt's
        for b in range(self.batch):
            holder = {self.cond_slot(b, f)[0]: f for f in self.cond[b]}
            holder.update({s: f for f, s in self.mem_of[b].items()})
            reads[(tracker.obj_ids[b], frame_idx)] = sorted(holder[int(s)] for s in
                                                            np.flatnonzero(out["memory_valid"][:, b]))

    monkeypatch.setattr(PolicyBank, "prepare", recording)
    return reads


@pytest.mark.parametrize("clip", ["bedroom", "dog"])
def test_stream_tracker_matches_samurai_with_prompts_mid_stream(samurai_model, clips, reference, clip,
                                                                 monkeypatch) -> None:
    """Live on each clip: object 1 from frame 0 (the predictor test's object, same reference), object 2
    added on frame 6 and corrected with a click on frame 10. Each reference object starts on its own frame 0,
    so object 2's reference runs on the clip from frame 6, incrementally (propagate to the correction, click,
    propagate on): what a live stream sees."""
    from sam2rt.runtime.frames import open_frames
    from sam2rt.runtime.stream import StreamTracker

    model_dir, _ = samurai_model
    add_at, fix_at, fix_xy = 6, 10, FIX[clip]
    a_xy, b_xy = CLICKS[clip]
    video = open_frames(str(clips[clip]))
    tracker = StreamTracker(model_dir, fill_hole_area=0, memory="samurai", samurai=samurai_config())
    reads = _record_prepare(monkeypatch, tracker)
    choices = _record_choices(monkeypatch)
    ours: dict[int, dict[int, np.ndarray]] = {1: {}, 2: {}}
    tracker.load_first_frame(video[0])
    _, _, logits = tracker.add_new_prompt(0, 1, points=[a_xy], labels=[1])
    ours[1][0] = logits[0, 0] > 0
    for f in range(1, FRAMES):
        ids, logits = tracker.track(video[f])
        if f in (add_at, fix_at):
            _, ids, logits = tracker.add_new_prompt(f, 2, points=[b_xy if f == add_at else fix_xy], labels=[1])
        for k, obj in enumerate(ids):
            ours[obj][f] = logits[k, 0] > 0

    ref_a = reference(clip, [_prompt(0, a_xy)])
    ref_b = reference(clip, [_prompt(0, b_xy), _prompt(fix_at - add_at, fix_xy)], start=add_at)
    seen_a = _compare(ours[1], {f: reads[(1, f)] for f in range(1, FRAMES)}, ref_a)
    seen_b = _compare(ours[2], {f: reads[(2, f)] for f in range(add_at + 1, FRAMES)}, ref_b, first=add_at,
                      prompts=(fix_at,))
    _report(f"StreamTracker {clip}, object 1 from 0 / object 2 added on {add_at}, corrected on {fix_at}",
            [seen_a, seen_b], choices)
    assert seen_a["left_out"] + seen_b["left_out"] > 0, (seen_a, seen_b)
    assert choices["weighted"] > 0 and (choices["differs"] > 0 or clip not in FORCING[SIZE]["differs_on"]), choices
