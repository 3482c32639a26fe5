"""``build(onnx_path, config) -> bytes``: one ONNX graph to one serialized TensorRT engine.

The network is strongly typed: every tensor keeps the type the ONNX graph gives it, so the engine runs in
the graph's own precision (an FP16 or QDQ-INT8 graph made by ``sam2rt convert``/``calibrate`` gives an FP16 or
INT8 engine; no precision flags, no calibrator). TensorRT 10 needs the STRONGLY_TYPED creation flag for
that (Jetson ships 10.x); TensorRT 11 is always strongly typed and ignores or lacks the flag.

This and ``runtime.trt_backend`` are the only modules that import TensorRT, and only when called.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping

from sam2rt.engines.cache import DeviceInfo, write_atomic
from sam2rt.engines.config import BuildConfig
from sam2rt.engines.profiles import Profile
from sam2rt.errors import Sam2rtError

INSTALL_TRT = ('TensorRT is not installed: pip install "sam2rt[trt-cu12]" on a CUDA 12 driver, "sam2rt[trt-cu13]" '
               'on a CUDA 13 driver (R580+); on Jetson use the TensorRT that JetPack ships (python3-libnvinfer, '
               'in a venv made with --system-site-packages) and pip install "sam2rt[jetson]"')
Log = Callable[[str], None]


def import_tensorrt() -> Any:
    """``import tensorrt`` or a Sam2rtError with the install command."""
    try:
        import tensorrt as trt
    except ImportError:
        raise Sam2rtError(INSTALL_TRT) from None
    return trt


def trt_major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def network_flags(trt: Any) -> int:
    """Creation flags of a strongly typed network: the flag on TensorRT 10, nothing on 11+ (always on)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if trt_major(trt) >= 11 or flag is None:
        return 0
    return 1 << int(flag)


def current_device() -> DeviceInfo:
    """This machine's GPU 0 and TensorRT version (what engines built here are specific to)."""
    trt = import_tensorrt()
    from sam2rt.runtime.backends.cuda import device_properties

    name, major, minor = device_properties()
    return DeviceInfo(gpu=name, compute_capability=f"{major}.{minor}", tensorrt=str(trt.__version__))


def _progress_monitor(trt: Any, log: Log) -> Any:
    """A TensorRT IProgressMonitor that logs each top-level build phase with its duration."""

    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._start: dict[str, float] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self._start[phase_name] = time.perf_counter()
            if parent_phase is None:
                log(f"  {phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            start = self._start.pop(phase_name, None)
            if start is not None and time.perf_counter() - start > 5.0:
                log(f"  {phase_name} done in {time.perf_counter() - start:.0f} s")

    return _Monitor()


def build(onnx_path: str | Path, config: BuildConfig, profiles: Mapping[str, Profile] | None = None,
          log: Log = print) -> bytes:
    """Parse ``onnx_path`` into a strongly typed network and build a serialized engine.

    Args:
        onnx_path: the graph (external weights beside it are found by path).
        config: workspace, timing cache; ``profiles`` gives the per-input (min, opt, max) shapes
            (``engines.profiles.graph_profiles``); None or empty for a static graph.
    Returns:
        the serialized engine (bytes); saving it is the caller's job.
    """
    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise Sam2rtError(f"TensorRT cannot parse {onnx_path}: {errors}; re-export the model with this sam2rt")
    cfg = builder.create_builder_config()
    cfg.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_bytes)
    cfg.progress_monitor = _progress_monitor(trt, log)
    _set_tf32(trt, cfg, config.tf32, log)
    if profiles:
        profile = builder.create_optimization_profile()
        for name, p in profiles.items():
            profile.set_shape(name, p.min, p.opt, p.max)
        if cfg.add_optimization_profile(profile) < 0:  # -1: TensorRT found the profile invalid (logged above)
            shapes = ", ".join(f"{n} min {p.min} opt {p.opt} max {p.max}" for n, p in profiles.items())
            raise Sam2rtError(f"TensorRT rejected the optimization profile of {onnx_path.name} ({shapes}); check "
                              "--max-objects/--max-points (each at least 1, opt within min..max) and that the graph "
                              "was exported by this sam2rt")
    cache = _load_timing_cache(cfg, config.timing_cache)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, cfg)
    if serialized is None:
        raise Sam2rtError(f"TensorRT failed to build an engine from {onnx_path} (see its messages above); try a "
                          f"larger --workspace (now {config.workspace_gib:g} GiB)")
    log(f"  built in {time.perf_counter() - start:.0f} s")
    if cache is not None and config.timing_cache is not None:
        write_atomic(Path(config.timing_cache), bytes(memoryview(cfg.get_timing_cache().serialize())))
    return bytes(memoryview(serialized))


def _set_tf32(trt: Any, cfg: Any, allow: bool, log: Log) -> None:
    """TensorRT computes FP32 convolutions and matmuls in TF32 (10-bit mantissa) unless the flag is cleared.

    Cleared by default (``BuildConfig.tf32``): an engine then computes what its graph says, as verified on
    ONNX Runtime; always cleared for the preprocessing graphs, whose resize weights need their 22 fraction bits.
    """
    flag = getattr(trt.BuilderFlag, "TF32", None)
    if flag is None:
        if not allow:
            log("  this TensorRT has no TF32 builder flag; FP32 layers run as it chooses")
        return
    if allow:
        cfg.set_flag(flag)
    else:
        cfg.clear_flag(flag)


def _load_timing_cache(cfg: Any, path: Path | None) -> Any:
    """Attach the persistent timing cache (empty when the file is absent) to the builder config."""
    if path is None:
        return None
    data = Path(path).read_bytes() if Path(path).is_file() else b""
    cache = cfg.create_timing_cache(data)
    if not cfg.set_timing_cache(cache, ignore_mismatch=False):
        raise Sam2rtError(f"the timing cache {path} does not fit this TensorRT or GPU; delete it and build again")
    return cache
