"""Optimization profiles and BuildConfig: pure functions of the contract, no TensorRT."""

from __future__ import annotations

import pytest

from sam2rt import contract as C
from sam2rt.engines.config import BuildConfig
from sam2rt.engines.profiles import all_profiles, check_within, graph_profiles
from sam2rt.errors import Sam2rtError


def test_decoder_profile_has_objects_and_points() -> None:
    cfg = BuildConfig(max_objects=8, max_points=5)
    p = graph_profiles(C.MASK_DECODER, 512, cfg)
    assert p["point_coords"].min == (1, 1, 2)
    assert p["point_coords"].opt == (1, 2, 2)
    assert p["point_coords"].max == (8, 7, 2)  # 5 clicks + a box's 2 corners
    assert p["image_embed"].max == (8, 256, 32, 32)
    assert "feat_s0" not in p  # static inputs need no profile


def test_attention_profile_tunes_for_a_full_bank() -> None:
    bank = C.BankConfig()
    p = graph_profiles(C.MEMORY_ATTENTION, 1024, BuildConfig.for_bank(bank))
    assert p["memory"].min == (1, 1, 4096, 64)
    assert p["memory"].opt == (bank.memory_slots, 1, 4096, 64)
    assert p["memory"].max == (bank.memory_slots, bank.max_objects, 4096, 64)
    assert p["obj_ptrs"].max == (bank.ptr_slots, bank.max_objects, 256)


def test_every_graph_has_profiles_for_its_dynamic_inputs() -> None:
    profiles = all_profiles(256, BuildConfig())
    assert set(profiles) == {g.name for g in (*C.GRAPHS, *C.PREPROCESS_GRAPHS, C.POSTPROCESS)}
    assert profiles["image_encoder"] == {}
    for g in C.PREPROCESS_GRAPHS:
        assert profiles[g.name]["frame"].max == (4096, 4096, 3)


def test_postprocess_profile_takes_any_object_count_and_mask_size() -> None:
    """Objects 1..max_objects, mask sides 1..max_frame_side (opt 1080p), the logits at h4 x h4."""
    p = graph_profiles(C.POSTPROCESS, 1024, BuildConfig(max_objects=8, max_frame_side=2048))
    assert p["low_res_masks"] == ((1, 1, 256, 256), (1, 1, 256, 256), (8, 1, 256, 256))
    assert p["resize_rows"] == ((1, 256), (1080, 256), (2048, 256))
    assert p["resize_cols"] == ((256, 1), (256, 1920), (256, 2048))
    with pytest.raises(Sam2rtError, match="mask width"):
        check_within(C.POSTPROCESS.name, {"B": 1, "Hm": 720, "Wm": 4097}, {"B": 16, "Hm": 4096, "Wm": 4096})


def test_limits_name_the_build_flag() -> None:
    with pytest.raises(Sam2rtError, match="--max-objects"):
        check_within("mask_decoder", {"B": 17, "N": 1}, {"B": 16, "N": 18})
    with pytest.raises(Sam2rtError, match="--max-points"):
        check_within("mask_decoder", {"B": 1, "N": 19}, {"B": 16, "N": 18})
    check_within("mask_decoder", {"B": 16, "N": 18}, {"B": 16, "N": 18})


@pytest.mark.parametrize("kwargs", [{"max_objects": 0}, {"opt_objects": 3, "max_objects": 2}, {"workspace_gib": 0}])
def test_bad_config_is_refused(kwargs: dict) -> None:
    with pytest.raises(Sam2rtError):
        BuildConfig(**kwargs)
