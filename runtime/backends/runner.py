"""The graph-runner interface: one small class per backend, validated against the graph contract.

``GraphRunner.run`` checks the feeds (names, dtypes, ranks, fixed and dynamic dims, C-contiguity) and the
optional preallocated outputs, then calls the backend's ``_run``. A backend writes each output named in
``out`` straight into the caller's array (ONNX Runtime through IO binding), so the memory encoder can write
into a slot of the memory bank without a copy. Imports neither torch nor tensorrt.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from typing import Mapping

import numpy as np

from sam2rt import contract as C
from sam2rt.errors import Sam2rtError

_DIM_MEANING = {"B": "objects", "N": "points per object", "M": "memory slots", "P": "object-pointer slots"}


class GraphRunner(ABC):
    """Runs one graph of the contract. Subclasses implement ``_run``; callers use ``run``.

    Args:
        spec: the graph's contract (names, dtypes, symbolic shapes).
        image_size: model input size S; resolves the spatial symbols S, h, h2, h4, hw.
        memory_tokens: tokens per memory slot (symbol T; the manifest's ``memory_tokens``); None: hw (SAM 2).
    """

    def __init__(self, spec: C.GraphSpec, image_size: int, memory_tokens: int | None = None) -> None:
        C.check_image_size(image_size)
        self.spec = spec
        self.image_size = image_size
        self.memory_tokens = memory_tokens
        self._spatial = C.resolve_dims(image_size, memory_tokens)
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
