"""ONNX Runtime on the GPU: which execution providers ``--backend ort-gpu`` uses, with which options.

The CUDA execution provider is the default: it runs any graph at once. The TensorRT execution provider is
opt-in (``providers=["tensorrt"]``): without options it builds an engine per session and again for every
new input shape (minutes each on a Jetson), so it gets an engine cache and a timing cache on disk and
explicit profile shapes from the contract (``engines.profiles``), the same ranges ``sam2rt build`` uses:
one engine per graph that serves every call, built once per machine. Imports neither torch nor tensorrt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import onnxruntime as ort

from sam2rt import contract as C
from sam2rt.engines.config import BuildConfig
from sam2rt.engines.profiles import Profile, graph_profiles
from sam2rt.errors import Sam2rtError

TRT_EP, CUDA_EP, CPU_EP = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
ORT_TRT_CACHE = "ort_tensorrt"  # beside the model's engines: MODEL_DIR/engines/ort_tensorrt


def _shapes(profiles: dict[str, Profile], which: str) -> str:
    """ORT's profile-shape syntax: ``name:d0xd1x...,name2:...``."""
    return ",".join(f"{name}:{'x'.join(str(d) for d in getattr(p, which))}" for name, p in profiles.items())


def tensorrt_provider_options(spec: C.GraphSpec, image_size: int, cache_dir: str | Path,
                              cfg: BuildConfig | None = None, memory_tokens: int | None = None) -> dict[str, str]:
    """TensorRT execution provider options for one graph: engine and timing caches under ``cache_dir``,
    min/opt/max shapes of every dynamic input (``engines.profiles.graph_profiles``), the workspace limit.

    e.g. memory_encoder at 512 px: ``trt_profile_max_shapes`` = "mask_logits:16x1x128x128,binarize:16,
    object_score_logits:16x1". (The provider has no documented TF32 option: TensorRT's default applies.)
    """
    cfg = cfg or BuildConfig()
    profiles = graph_profiles(spec, image_size, cfg, memory_tokens)
    options = {
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache_dir),
        "trt_max_workspace_size": str(cfg.workspace_bytes),
    }
    if profiles:
        options.update({"trt_profile_min_shapes": _shapes(profiles, "min"),
                        "trt_profile_opt_shapes": _shapes(profiles, "opt"),
                        "trt_profile_max_shapes": _shapes(profiles, "max")})
    return options


def gpu_providers(spec: C.GraphSpec, image_size: int, requested: Sequence[str] | None = None,
                  cache_dir: str | Path | None = None,
                  cfg: BuildConfig | None = None,
                  memory_tokens: int | None = None) -> tuple[list[str], list[dict[str, str]]]:
    """(provider names, their options) for ``InferenceSession``: CUDA then CPU, with TensorRT first only when
    ``requested`` names it ("tensorrt" or its full name); ``cache_dir`` is needed then."""
    available = ort.get_available_providers()
    if CUDA_EP not in available:
        raise Sam2rtError("backend ort-gpu needs onnxruntime-gpu: pip uninstall onnxruntime && "
                          'pip install "sam2rt[gpu]" (or pip install onnxruntime-gpu)')
    wanted = {p.lower() for p in (requested or ())}
    unknown = wanted - {"tensorrt", TRT_EP.lower(), "cuda", CUDA_EP.lower(), "cpu", CPU_EP.lower()}
    if unknown:
        raise Sam2rtError(f"unknown execution provider(s) {sorted(unknown)} for ort-gpu; choose from tensorrt, cuda")
    names, options = [CUDA_EP, CPU_EP], [{}, {}]
    if wanted & {"tensorrt", TRT_EP.lower()}:
        if TRT_EP not in available:
            raise Sam2rtError("this onnxruntime-gpu has no TensorRT execution provider (it needs the TensorRT "
                              'libraries: pip install "sam2rt[trt-cu12]"); or leave "tensorrt" out to use CUDA')
        if cache_dir is None:
            raise Sam2rtError("the TensorRT execution provider needs a cache directory for its engines")
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        names.insert(0, TRT_EP)
        options.insert(0, tensorrt_provider_options(spec, image_size, cache_dir, cfg, memory_tokens))
    return names, options
