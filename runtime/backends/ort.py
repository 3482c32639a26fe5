"""ONNX Runtime runners (CPU, and CUDA when onnxruntime-gpu is installed) and ``load_runners`` for every backend."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnxruntime as ort

from sam2rt import contract as C
from sam2rt.errors import Sam2rtError
from sam2rt.manifest import load_manifest
from sam2rt.runtime.backends.runner import GraphRunner

BACKENDS = ("ort", "ort-gpu", "trt")
_PROVIDER_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                     "tensorrt": "TensorrtExecutionProvider"}
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
               "tensor(bool)": "bool", "tensor(int32)": "int32", "tensor(int64)": "int64",
               "tensor(int8)": "int8", "tensor(uint8)": "uint8"}


def resolve_providers(providers: str | Sequence[str] | None = None) -> list[str]:
    """ONNX Runtime execution providers from names or the aliases "cpu" / "cuda"; CPU is always last."""
    if providers is None:
        providers = ["cpu"]
    elif isinstance(providers, str):
        providers = [providers]
    available = ort.get_available_providers()
    resolved: list[str] = []
    for p in providers:
        name = _PROVIDER_ALIASES.get(p.lower(), p)
        if name not in available:
            if name == "CUDAExecutionProvider":
                raise Sam2rtError("ONNX Runtime has no CUDA execution provider here; install the GPU build with "
                                  "`pip uninstall onnxruntime && pip install onnxruntime-gpu` (or sam2rt[gpu]), "
                                  "or use the cpu provider")
            raise Sam2rtError(f"ONNX Runtime execution provider {p!r} is not available; available: {available} "
                              f"(aliases: {sorted(_PROVIDER_ALIASES)})")
        if name not in resolved:
            resolved.append(name)
    if "CPUExecutionProvider" not in resolved:
        resolved.append("CPUExecutionProvider")  # fallback for nodes the accelerator cannot take
    return resolved


def session_options(threads: int = 0) -> ort.SessionOptions:
    """The runtime's ONNX Runtime session options (also used by ``benchmarks.graph_profile``).

    threads: intra-op threads; 0 lets ONNX Runtime choose (one per physical core it detects).
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    # Four sessions run one after another: idle worker threads must sleep rather than spin, or they
    # steal the cores from the session that is running (measured with `sam2rt bench`).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # FP16 graphs make ONNX Runtime warn about every fp16 node it cannot constant-fold on the CPU
    options.log_severity_level = 3  # errors only
    return options


class OrtRunner(GraphRunner):
    """ONNX Runtime runner with IO binding: outputs given in ``out`` are written in place.

    Args:
        spec: the graph's contract.
        image_size: model input size S.
        path: the graph's ONNX file.
        threads: intra-op threads; 0 lets ONNX Runtime choose.
        providers: execution providers or aliases ("cpu", "cuda"); default CPU.
    """

    def __init__(self, spec: C.GraphSpec, image_size: int, path: str | Path,
                 threads: int = 0, providers: str | Sequence[str] | None = None,
                 memory_tokens: int | None = None) -> None:
        super().__init__(spec, image_size, memory_tokens)
        if not isinstance(threads, int) or threads < 0:
            raise Sam2rtError(f"threads must be an integer >= 0 (0 = ONNX Runtime's default), got {threads!r}")
        self.path = Path(path)
        self.providers, self.provider_options = self._providers(providers)
        self.session = self._create_session(threads)
        self._check_session()

    def _providers(self, providers: str | Sequence[str] | None) -> tuple[list[str], list[dict[str, str]]]:
        """Execution provider names and their options, in priority order."""
        names = resolve_providers(providers)
        return names, [{} for _ in names]

    def _create_session(self, threads: int) -> ort.InferenceSession:
        hint = "re-export the model with `sam2rt export --model <name> --out <dir>`"
        if not self.path.is_file():
            raise Sam2rtError(f"{self.path} does not exist; {hint}")
        try:
            return ort.InferenceSession(str(self.path), sess_options=session_options(threads), providers=self.providers,
                                        provider_options=self.provider_options)
        except Exception as e:  # ORT raises several pybind types (InvalidProtobuf, Fail, ...)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise Sam2rtError(f"ONNX Runtime cannot load {self.path} ({first}); the file may be corrupt, "
                              f"truncated or from an incompatible exporter: {hint}") from None

    def _check_session(self) -> None:
        """The ONNX file must declare the contract's names, dtypes and ranks."""
        for kind, declared, specs in (("input", self.session.get_inputs(), self.spec.inputs),
                                      ("output", self.session.get_outputs(), self.spec.outputs)):
            got = {a.name: (_ORT_DTYPES.get(a.type, a.type), len(a.shape)) for a in declared}
            want = {t.name: (t.dtype, len(t.shape)) for t in specs}
            if got != want:
                raise Sam2rtError(f"{self.path} does not match the {self.name} contract: its {kind}s are {got}, "
                                  f"expected {want} (name: (dtype, rank)); re-export the model with this sam2rt")

    def _run(self, feeds: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        binding = self.session.io_binding()
        for name, a in feeds.items():
            binding.bind_cpu_input(name, a)
        for t in self.spec.outputs:
            buf = out.get(t.name)
            if buf is None:
                binding.bind_output(t.name, "cpu")
            else:
                binding.bind_output(t.name, "cpu", 0, buf.dtype, list(buf.shape), buf.ctypes.data)
        self.session.run_with_iobinding(binding)
        result: dict[str, np.ndarray] = {}
        for t, value in zip(self.spec.outputs, binding.get_outputs()):
            buf = out.get(t.name)
            if buf is not None and value.data_ptr() == buf.ctypes.data:
                result[t.name] = buf  # ORT wrote into the caller's memory
            else:
                # Zero-copy view that keeps the OrtValue alive (copy_outputs_to_cpu would also copy the
                # pre-bound outputs); a pre-bound output ORT did not write in place is copied by ``run``.
                result[t.name] = value.numpy()
        return result


class OrtGpuRunner(OrtRunner):
    """ONNX Runtime on the GPU, IO-bound: the CUDA execution provider; the TensorRT one only when asked for
    (``providers=["tensorrt"]``), with an engine cache in ``cache_dir`` and the contract's profile shapes
    (see ``runtime.backends.ort_gpu``).

    ``run`` takes and returns numpy arrays (ONNX Runtime copies them across); ``run_device`` binds device
    buffers (:class:`~sam2rt.runtime.backends.cuda.Buf`, e.g. a bank slot) by address, so nothing crosses to the host.
    """

    def __init__(self, spec: C.GraphSpec, image_size: int, path: str | Path, threads: int = 0,
                 providers: str | Sequence[str] | None = None, cache_dir: str | Path | None = None,
                 memory_tokens: int | None = None) -> None:
        self._cache_dir = cache_dir
        super().__init__(spec, image_size, path, threads=threads, providers=providers, memory_tokens=memory_tokens)

    def _providers(self, providers: str | Sequence[str] | None) -> tuple[list[str], list[dict[str, str]]]:
        from sam2rt.runtime.backends.ort_gpu import gpu_providers

        requested = [providers] if isinstance(providers, str) else providers
        return gpu_providers(self.spec, self.image_size, requested, self._cache_dir,
                             memory_tokens=self._spatial["T"])

    def _run(self, feeds: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        binding = self.session.io_binding()
        for name, a in feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(a, "cuda", 0))
        for name in self.spec.output_names:
            binding.bind_output(name, "cuda", 0)
        self.session.run_with_iobinding(binding)
        values = binding.copy_outputs_to_cpu()
        return {name: (np.copyto(out[name], v) or out[name]) if name in out else v
                for name, v in zip(self.spec.output_names, values)}

    def run_device(self, tensors: Mapping[str, object]) -> None:
        """Run with every input and output bound to device memory: {name: Buf with ptr, shape, dtype}."""
        binding = self.session.io_binding()
        for t in self.spec.inputs:
            b = tensors[t.name]
            binding.bind_input(t.name, "cuda", 0, b.dtype, list(b.shape), b.ptr)
        for t in self.spec.outputs:
            b = tensors[t.name]
            binding.bind_output(t.name, "cuda", 0, b.dtype, list(b.shape), b.ptr)
        self.session.run_with_iobinding(binding)


def load_runners(model_dir: str | Path, backend: str = "ort", threads: int = 0,
                 providers: str | Sequence[str] | None = None,
                 engine_dir: str | Path | None = None,
                 graphs: Sequence[str] | None = None) -> dict[str, GraphRunner]:
    """One runner per graph of an exported model directory, keyed by graph name.

    Args:
        model_dir: directory with manifest.json and the four ONNX graphs (from ``sam2rt export``).
        backend: "ort" (ONNX Runtime, CPU unless ``providers`` say otherwise), "ort-gpu" (onnxruntime-gpu:
            the CUDA execution provider; ``providers=["tensorrt"]`` adds its TensorRT provider, with caches) or
            "trt" (TensorRT engines from ``sam2rt build``).
        threads: intra-op threads per session; 0 lets ONNX Runtime choose.
        providers: ONNX Runtime execution providers or aliases ("cpu", "cuda", "tensorrt"); default CPU for
            "ort", CUDA for "ort-gpu".
        engine_dir: TensorRT engines (backend "trt"; default MODEL_DIR/engines, where ``sam2rt build`` writes),
            or the TensorRT execution provider's engine cache (backend "ort-gpu"; default
            MODEL_DIR/engines/ort_tensorrt).
        graphs: load only these graphs (e.g. the image predictor's image_encoder and mask_decoder); default all.
    """
    if backend not in BACKENDS:
        raise Sam2rtError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    manifest = load_manifest(model_dir)
    specs = [spec for spec in C.GRAPHS if graphs is None or spec.name in graphs]
    if backend == "trt":
        from sam2rt.runtime.backends.trt import load_trt_runners

        return {name: r for name, r in load_trt_runners(model_dir, engine_dir).items()
                if any(spec.name == name for spec in specs)}
    if backend == "ort-gpu":
        from sam2rt.engines.cache import default_engine_dir
        from sam2rt.runtime.backends.ort_gpu import ORT_TRT_CACHE

        cache = Path(engine_dir) if engine_dir is not None else default_engine_dir(model_dir) / ORT_TRT_CACHE
        return {spec.name: OrtGpuRunner(spec, manifest.image_size, manifest.graph_path(spec.name), threads=threads,
                                        providers=providers, cache_dir=cache, memory_tokens=manifest.memory_tokens)
                for spec in specs}
    return {spec.name: OrtRunner(spec, manifest.image_size, manifest.graph_path(spec.name),
                                 threads=threads, providers=providers, memory_tokens=manifest.memory_tokens)
            for spec in specs}
