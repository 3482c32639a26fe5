"""sam2rt.runtime.imageops against the official SAM 2 / PyTorch code it reproduces."""

from __future__ import annotations

import shutil
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sam2rt.errors import Sam2rtError
from sam2rt.runtime import imageops

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FRAMES = DATA / "videos" / "bedroom_frames"
needs_frames = pytest.mark.skipif(not FRAMES.is_dir(), reason=f"test data not found at {FRAMES}")
needs_images = pytest.mark.skipif(not (DATA / "images").is_dir(), reason=f"test data not found at {DATA}")


# --- preprocessing -------------------------------------------------------------------------------


def _official_frames(folder: Path, image_size: int) -> torch.Tensor:
    from sam2.utils.misc import load_video_frames_from_jpg_images

    images, _, _ = load_video_frames_from_jpg_images(
        str(folder), image_size, offload_video_to_cpu=True, compute_device=torch.device("cpu")
    )
    return images  # (T, 3, S, S) float32


@needs_frames
@pytest.mark.parametrize("image_size", [1024, 512])
def test_preprocess_official_is_bit_exact(tmp_path: Path, image_size: int) -> None:
    names = ["00000.jpg", "00017.jpg", "00039.jpg"]
    for i, name in enumerate(names):
        shutil.copy(FRAMES / name, tmp_path / f"{i}.jpg")
    expected = _official_frames(tmp_path, image_size).numpy()
    for i, name in enumerate(names):
        rgb = np.array(Image.open(FRAMES / name).convert("RGB"))
        got = imageops.preprocess_official(rgb, image_size)
        assert got.shape == (1, 3, image_size, image_size) and got.dtype == np.float32
        max_diff = float(np.abs(got[0] - expected[i]).max())
        print(f"preprocess_official {name} S={image_size}: max abs diff {max_diff}")
        assert max_diff == 0.0


@needs_images
def test_preprocess_official_shrinking_matches_loader() -> None:
    from sam2.utils.misc import _load_img_as_tensor

    path = DATA / "images" / "truck.jpg"  # 1800x1200: Pillow antialiases when shrinking to 1024
    img, _, _ = _load_img_as_tensor(str(path), 1024)
    expected = img.to(torch.float32)
    expected -= torch.tensor(imageops.IMAGENET_MEAN, dtype=torch.float32)[:, None, None]
    expected /= torch.tensor(imageops.IMAGENET_STD, dtype=torch.float32)[:, None, None]
    got = imageops.preprocess_official(np.array(Image.open(path).convert("RGB")), 1024)
    assert np.array_equal(got[0], expected.numpy())


def test_preprocess_fast_is_close() -> None:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    rgb = np.array(Image.fromarray(small).resize((320, 180), Image.Resampling.BILINEAR))  # smooth content
    exact = imageops.preprocess_official(rgb, 256)
    fast = imageops.preprocess_fast(rgb, 256)
    assert fast.shape == exact.shape and fast.dtype == np.float32
    assert np.abs(fast - exact).mean() < 0.05  # a few uint8 levels at most, on average


def test_preprocess_rejects_bad_frames() -> None:
    with pytest.raises(Sam2rtError, match="uint8"):
        imageops.preprocess_official(np.zeros((8, 8, 3), np.float32), 16)
    with pytest.raises(Sam2rtError, match="image_size"):
        imageops.preprocess_fast(np.zeros((8, 8, 3), np.uint8), 0)


# --- bilinear resize -----------------------------------------------------------------------------

RESIZE_CASES = [
    ((1, 1, 128, 128), (540, 960)),  # low-res logits -> video resolution
    ((1, 1, 256, 256), (1024, 1024)),
    ((1, 1, 540, 960), (512, 512)),  # mask prompt -> model size (shrink)
    ((2, 3, 37, 53), (71, 29)),  # one axis up, one down, odd factors
    ((1, 1, 1024, 1024), (256, 256)),
    ((3, 40, 40), (40, 17)),  # no batch axis, one axis unchanged
]


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("in_shape,out_hw", RESIZE_CASES)
def test_resize_bilinear_matches_interpolate(in_shape: tuple, out_hw: tuple, antialias: bool) -> None:
    x = np.random.default_rng(1).standard_normal(in_shape).astype(np.float32)
    t = torch.from_numpy(x)
    t4 = t if t.dim() == 4 else t[None]
    ref = F.interpolate(t4, size=out_hw, mode="bilinear", align_corners=False, antialias=antialias)
    ref = ref.reshape(in_shape[:-2] + out_hw).numpy()
    got = imageops.resize_bilinear(x, out_hw, antialias=antialias)
    max_diff = float(np.abs(got - ref).max())
    print(f"resize {in_shape}->{out_hw} aa={antialias}: max abs diff {max_diff:.2e}")
    assert got.shape == ref.shape and got.dtype == np.float32
    assert max_diff <= 1e-5


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("in_size,out_size", [(128, 960), (53, 29), (999, 123), (960, 512), (7, 1000)])
def test_resize_matrix_equals_torch_weights(in_size: int, out_size: int, antialias: bool) -> None:
    # resizing the identity along one axis reads PyTorch's weights out exactly
    eye = torch.eye(in_size)[None, None]
    ref = F.interpolate(eye, size=(in_size, out_size), mode="bilinear", align_corners=False,
                        antialias=antialias)[0, 0].numpy().T  # (out, in)
    np.testing.assert_array_equal(imageops.resize_matrix(in_size, out_size, antialias), ref)


def test_resize_matrix_rows_sum_to_one_and_cache() -> None:
    m = imageops.resize_matrix(960, 512, True)
    assert m.shape == (512, 960) and m.dtype == np.float32
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-6)
    assert imageops.resize_matrix(960, 512, True) is m
    assert not m.flags.writeable


# --- mask prompt ---------------------------------------------------------------------------------


def _official_mask_input(mask: np.ndarray, image_size: int) -> torch.Tensor:
    """The mask lines of SAM2VideoPredictor.add_new_mask, verbatim."""
    mask_t = torch.tensor(mask, dtype=torch.bool)
    mask_H, mask_W = mask_t.shape
    mask_inputs_orig = mask_t[None, None].float()
    if mask_H != image_size or mask_W != image_size:
        mask_inputs = F.interpolate(
            mask_inputs_orig, size=(image_size, image_size), align_corners=False, mode="bilinear",
            antialias=True,
        )
        return mask_inputs, (mask_inputs >= 0.5).float()
    return mask_inputs_orig, mask_inputs_orig


def _blobs(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A (H, W) bool mask of a few random ellipses."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = np.zeros(shape, bool)
    for _ in range(5):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        ry, rx = rng.uniform(3, shape[0] / 3), rng.uniform(3, shape[1] / 3)
        mask |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return mask


@pytest.mark.parametrize("shape,size", [((540, 960), 1024), ((540, 960), 512), ((256, 256), 512),
                                        ((1024, 1024), 1024), ((333, 77), 256)])
def test_mask_prompt_matches_add_new_mask(shape: tuple[int, int], size: int) -> None:
    mask = _blobs(shape, seed=shape[0] + size)
    before_threshold, expected = _official_mask_input(mask, size)
    got = imageops.mask_prompt_to_input(mask, size)
    assert got.shape == (1, 1, size, size) and got.dtype == np.float32
    differ = got != expected.numpy()
    # a pixel may only flip where PyTorch's interpolated value sits on the 0.5 threshold
    near = np.abs(before_threshold.numpy() - 0.5) <= 1e-5
    print(f"mask {shape}->{size}: {int(differ.sum())} differing pixels")
    assert not (differ & ~near).any()
    assert differ.sum() <= 2


def test_mask_prompt_accepts_01_and_rejects_3d() -> None:
    mask = _blobs((64, 80), seed=3)
    np.testing.assert_array_equal(
        imageops.mask_prompt_to_input(mask.astype(np.uint8), 32), imageops.mask_prompt_to_input(mask, 32)
    )
    with pytest.raises(Sam2rtError, match="2-D"):
        imageops.mask_prompt_to_input(mask[None], 32)


# --- fill holes ----------------------------------------------------------------------------------


def _fill_holes_reference(logits: np.ndarray, max_area: int) -> np.ndarray:
    """Breadth-first flood fill of 8-connected background (<= 0) components."""
    out = logits.copy()
    for plane in out.reshape((-1,) + out.shape[-2:]):
        h, w = plane.shape
        seen = np.zeros((h, w), bool)
        for y0 in range(h):
            for x0 in range(w):
                if seen[y0, x0] or plane[y0, x0] > 0:
                    continue
                component, queue = [], deque([(y0, x0)])
                seen[y0, x0] = True
                while queue:
                    y, x = queue.popleft()
                    component.append((y, x))
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            ny, nx = y + dy, x + dx
                            if 0 <= ny < h and 0 <= nx < w and not seen[ny, nx] and plane[ny, nx] <= 0:
                                seen[ny, nx] = True
                                queue.append((ny, nx))
                if len(component) <= max_area:
                    ys, xs = zip(*component)
                    plane[list(ys), list(xs)] = np.float32(0.1)
    return out


@pytest.mark.parametrize("max_area", [1, 8, 30])
def test_fill_holes_matches_flood_fill(max_area: int) -> None:
    rng = np.random.default_rng(max_area)
    logits = rng.normal(0.8, 1.0, (3, 1, 48, 40)).astype(np.float32)  # mostly foreground, many holes
    logits[1, 0, 10:20, 10:20] = -3.0  # a large hole that must stay
    logits[2, 0, :, :3] = 0.0  # exact zeros count as background
    got = imageops.fill_holes(logits, max_area)
    expected = _fill_holes_reference(logits, max_area)
    assert got.dtype == np.float32 and got is not logits
    np.testing.assert_array_equal(got, expected)
    assert (got != logits).any()


def test_fill_holes_disabled_returns_input() -> None:
    logits = np.full((1, 1, 4, 4), -1.0, np.float32)
    assert imageops.fill_holes(logits, 0) is logits


# --- bfloat16 rounding ---------------------------------------------------------------------------


def test_bf16_round_matches_torch() -> None:
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 1_000_000, dtype=np.uint64).astype(np.uint32)
    bits[:100_000] = (bits[:100_000] & np.uint32(0xFFFF0000)) | np.uint32(0x8000)  # exact ties
    bits[100_000:110_000] &= np.uint32(0x807FFFFF)  # subnormals and zeros
    x = bits.view(np.float32)
    x[110_000:300_000] = rng.standard_normal(190_000).astype(np.float32) * 10.0
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 3.3895314e38, -3.4028235e38, 1e-45, 1.0]
    x[300_000 : 300_000 + len(specials)] = np.array(specials, np.float32)
    expected = torch.from_numpy(x.copy()).to(torch.bfloat16).float().numpy()
    got = imageops.bf16_round_(x)
    assert got is x
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got[~nan].view(np.uint32), expected[~nan].view(np.uint32))


def test_bf16_round_rejects_float64() -> None:
    with pytest.raises(Sam2rtError, match="float32"):
        imageops.bf16_round_(np.zeros(3))


# --- overlay -------------------------------------------------------------------------------------


def test_overlay_colors_and_contours() -> None:
    rgb = np.zeros((40, 60, 3), np.uint8)
    masks = np.zeros((2, 40, 60), bool)
    masks[0, 5:20, 5:25] = True
    masks[1, 22:35, 30:55] = True
    out = imageops.overlay(rgb, masks, [1, 7])
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert (out[~masks.any(0)] == 0).sum() < out[~masks.any(0)].size  # contours drawn outside too
    assert imageops.object_color(1) != imageops.object_color(7)
    assert imageops.object_color(7) == imageops.object_color(7)
    np.testing.assert_array_equal(out, imageops.overlay(rgb, masks, [1, 7]))
    with pytest.raises(Sam2rtError, match="masks"):
        imageops.overlay(rgb, masks[:, :10], [1, 7])
