"""Graph runners: one small interface per backend, validated against the graph contract.

``GraphRunner.run`` checks the feeds (names, dtypes, ranks, fixed and dynamic dims, C-contiguity) and the
optional preallocated outputs, then calls the backend's ``_run``. A backend writes each output named in
``out`` straight into the caller's array (ONNX Runtime through IO binding), so the memory encoder can write
into a slot of the memory bank without a copy. Imports neither torch nor tensorrt.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnxruntime as ort

from sam2rt import contract as C
from sam2rt.errors import Sam2rtError
from sam2rt.manifest import load_manifest

BACKENDS = ("ort", "ort-gpu", "trt")
_DIM_MEANING = {"B": "objects", "N": "points per object", "M": "memory slots", "P": "object-pointer slots"}
_PROVIDER_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                     "tensorrt": "TensorrtExecutionProvider"}
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
               "tensor(bool)": "bool", "tensor(int32)": "int32", "tensor(int64)": "int64",
               "tensor(int8)": "int8", "tensor(uint8)": "uint8"}


class GraphRunner(ABC):
    """Runs one graph of the contract. Subclasses implement ``_run``; callers use ``run``.

    Args:
        spec: the graph's contract (names, dtypes, symbolic shapes).
        image_size: model input size S; resolves the spatial symbols S, h, h2, h4, hw.
    """

    def __init__(self, spec: C.GraphSpec, image_size: int) -> None:
        C.check_image_size(image_size)
        self.spec = spec
        self.image_size = image_size
        self._spatial = C.resolve_dims(image_size)
        self._warned: set[str] = set()
        for t in spec.inputs + spec.outputs:
            unknown = [d for d in t.shape if isinstance(d, str) and d not in self._spatial and d not in C.DYNAMIC_DIMS]
            assert not unknown, f"{spec.name}.{t.name}: unknown symbols {unknown}"
        in_dyn = {d for t in spec.inputs for d in t.shape if d in C.DYNAMIC_DIMS}
        out_dyn = {d for t in spec.outputs for d in t.shape if d in C.DYNAMIC_DIMS}
        assert out_dyn <= in_dyn, f"{spec.name}: output dims {out_dyn - in_dyn} are not set by any input"

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.name!r}, image_size={self.image_size})"

    def run(self, feeds: Mapping[str, np.ndarray],
            out: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Validate ``feeds`` (and ``out``), run the graph, return every output by name.

        Args:
            feeds: one C-contiguous array per input, dtype and shape as in the contract
                (e.g. memory_encoder: vision_feat float32 (1, 256, h, h), mask_logits float32 (B, 1, h4, h4), ...).
            out: optional preallocated arrays for some outputs, dtype and shape as ``output_shapes(feeds)``;
                they are written in place and returned as the very same objects. A C-contiguous slot view such
                as ``bank[m]`` of a (M, B, hw, 64) bank works; a strided view is filled by a copy (warned once).

        Returns:
            {output name: array}; arrays not given in ``out`` are new.
        """
        dims = self._check_feeds(feeds)
        out = dict(out or {})
        direct, staged = self._check_out(out, self._resolve_outputs(dims), feeds)
        result = self._run(dict(feeds), direct)
        assert set(result) == set(self.spec.output_names), f"{self.name}: _run returned {sorted(result)}"
        for name, buf in out.items():
            if result[name] is buf:
                continue
            np.copyto(buf, result[name])
            result[name] = buf
            if name not in self._warned:
                self._warned.add(name)
                why = staged.get(name, f"the {type(self).__name__} backend could not write into it; "
                                       "one extra copy per call")
                warnings.warn(f"{self.name}: out[{name!r}] is filled by a copy because {why}", stacklevel=2)
        return result

    def output_shapes(self, feeds: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
        """Concrete shape of every output for these feeds (validated), e.g. for preallocating ``out``."""
        return self._resolve_outputs(self._check_feeds(feeds))

    @abstractmethod
    def _run(self, feeds: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on validated feeds. Must return the very arrays of ``out`` (C-contiguous, aligned, writeable,
        right dtype and shape) after writing them; returning another array for such a name makes ``run``
        copy it over and warn."""

    # -- validation -------------------------------------------------------------------------------------

    def _fail(self, message: str) -> Sam2rtError:
        return Sam2rtError(f"{self.name}: {message}")

    def _check_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, int]:
        """Check every feed against the contract; return the dynamic dims, e.g. {"B": 2, "M": 10}."""
        if not isinstance(feeds, Mapping):
            raise self._fail(f"feeds must be a mapping of input name to numpy array, got {type(feeds).__name__}")
        expected = self.spec.input_names
        missing = [n for n in expected if n not in feeds]
        unexpected = [n for n in feeds if n not in expected]
        if missing or unexpected:
            raise self._fail(f"feeds are missing {missing} and have unexpected {unexpected}; "
                             f"the inputs are {expected}")
        dims: dict[str, tuple[int, str, int]] = {}  # symbol -> (size, input name, axis)
        for t in self.spec.inputs:
            self._check_array(t, feeds[t.name], dims)
        return {d: size for d, (size, _, _) in dims.items()}

    def _check_array(self, t: C.TensorSpec, a: np.ndarray, dims: dict[str, tuple[int, str, int]]) -> None:
        if not isinstance(a, np.ndarray):
            raise self._fail(f"input {t.name!r} must be a numpy array, got {type(a).__name__}")
        if a.dtype != np.dtype(t.dtype):
            raise self._fail(f"input {t.name!r} has dtype {a.dtype}, expected {t.dtype} "
                             f"(no implicit casting: convert it with .astype(np.{t.dtype}))")
        expected = self._shape_text(t)
        if a.ndim != len(t.shape):
            raise self._fail(f"input {t.name!r} has rank {a.ndim} (shape {a.shape}), expected {expected}")
        for axis, (d, size) in enumerate(zip(t.shape, a.shape)):
            if d in C.DYNAMIC_DIMS:
                self._check_dynamic(t.name, axis, d, size, dims)
            elif size != self._spatial.get(d, d):
                raise self._fail(f"input {t.name!r} has shape {a.shape}, expected {expected} "
                                 f"(axis {axis} must be {self._spatial.get(d, d)})")
        if not a.flags.c_contiguous:
            raise self._fail(f"input {t.name!r} is not C-contiguous; pass np.ascontiguousarray(...) of it")

    def _check_dynamic(self, name: str, axis: int, d: str, size: int, dims: dict[str, tuple[int, str, int]]) -> None:
        meaning = _DIM_MEANING.get(d, d)
        if size < 1:
            raise self._fail(f"input {name!r} axis {axis} ({d}, {meaning}) is {size}; it must be at least 1")
        if d not in dims:
            dims[d] = (size, name, axis)
            return
        first, first_name, first_axis = dims[d]
        if size != first:
            raise self._fail(f"inputs disagree on {d} ({meaning}): {first} in {first_name!r} (axis {first_axis}) "
                             f"but {size} in {name!r} (axis {axis}); they must be equal")

    def _shape_text(self, t: C.TensorSpec) -> str:
        return "(" + ", ".join(str(self._spatial.get(d, d)) for d in t.shape) + ")"

    def _resolve_outputs(self, dims: Mapping[str, int]) -> dict[str, tuple[int, ...]]:
        both = {**self._spatial, **dims}
        return {t.name: tuple(int(s) for s in t.resolve(both)) for t in self.spec.outputs}

    def _check_out(self, out: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]],
                   feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """Check preallocated outputs; split them into those written directly and those needing a copy.

        Returns ``(direct, staged)``: direct arrays go to ``_run``; ``staged`` maps the other names to why.
        """
        unknown = [n for n in out if n not in shapes]
        if unknown:
            raise self._fail(f"out names {unknown} are not outputs; the outputs are {self.spec.output_names}")
        direct: dict[str, np.ndarray] = {}
        staged: dict[str, str] = {}
        for t in self.spec.outputs:
            if t.name not in out:
                continue
            buf = out[t.name]
            if not isinstance(buf, np.ndarray):
                raise self._fail(f"out[{t.name!r}] must be a numpy array, got {type(buf).__name__}")
            if buf.dtype != np.dtype(t.dtype) or buf.shape != shapes[t.name]:
                raise self._fail(f"out[{t.name!r}] is {buf.dtype} {buf.shape}, expected {t.dtype} "
                                 f"{shapes[t.name]} for these feeds (see output_shapes(feeds))")
            if not buf.flags.writeable:
                raise self._fail(f"out[{t.name!r}] is read-only; pass a writeable array")
            others = [f"feed {n!r}" for n, a in feeds.items() if np.may_share_memory(a, buf)]
            others += [f"out[{n!r}]" for n, a in out.items() if n != t.name and np.may_share_memory(a, buf)]
            if others:
                raise self._fail(f"out[{t.name!r}] overlaps {', '.join(others)} in memory; pass a separate buffer")
            if buf.flags.c_contiguous and buf.flags.aligned:
                direct[t.name] = buf
            else:
                staged[t.name] = "it is not a C-contiguous, aligned array (pass one to have it written in place)"
        return direct, staged


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
                 threads: int = 0, providers: str | Sequence[str] | None = None) -> None:
        super().__init__(spec, image_size)
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
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        # Four sessions run one after another: idle worker threads must sleep rather than spin, or they
        # steal the cores from the session that is running (measured with `sam2rt bench`).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # FP16 graphs make ONNX Runtime warn about every fp16 node it cannot constant-fold on the CPU
        options.log_severity_level = 3  # errors only
        try:
            return ort.InferenceSession(str(self.path), sess_options=options, providers=self.providers,
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
    (see ``runtime.ort_gpu``).

    ``run`` takes and returns numpy arrays (ONNX Runtime copies them across); ``run_device`` binds device
    buffers (:class:`~sam2rt.runtime.cuda.Buf`, e.g. a bank slot) by address, so nothing crosses to the host.
    """

    def __init__(self, spec: C.GraphSpec, image_size: int, path: str | Path, threads: int = 0,
                 providers: str | Sequence[str] | None = None, cache_dir: str | Path | None = None) -> None:
        self._cache_dir = cache_dir
        super().__init__(spec, image_size, path, threads=threads, providers=providers)

    def _providers(self, providers: str | Sequence[str] | None) -> tuple[list[str], list[dict[str, str]]]:
        from sam2rt.runtime.ort_gpu import gpu_providers

        requested = [providers] if isinstance(providers, str) else providers
        return gpu_providers(self.spec, self.image_size, requested, self._cache_dir)

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
        from sam2rt.runtime.trt_backend import load_trt_runners

        return {name: r for name, r in load_trt_runners(model_dir, engine_dir).items()
                if any(spec.name == name for spec in specs)}
    if backend == "ort-gpu":
        from sam2rt.engines.cache import default_engine_dir
        from sam2rt.runtime.ort_gpu import ORT_TRT_CACHE

        cache = Path(engine_dir) if engine_dir is not None else default_engine_dir(model_dir) / ORT_TRT_CACHE
        return {spec.name: OrtGpuRunner(spec, manifest.image_size, manifest.graph_path(spec.name), threads=threads,
                                        providers=providers, cache_dir=cache)
                for spec in specs}
    return {spec.name: OrtRunner(spec, manifest.image_size, manifest.graph_path(spec.name),
                                 threads=threads, providers=providers)
            for spec in specs}
