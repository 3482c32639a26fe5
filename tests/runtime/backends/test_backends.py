"""Graph runners: feed validation, in-place outputs through IO binding, session errors, load_runners.

Tiny hand-built ONNX graphs follow a toy contract; the real four graphs come from the shared
``exported_tiny_256`` export (sam2.1_hiera_tiny at 256 px, random weights).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from sam2rt import contract as C
from sam2rt.errors import Sam2rtError
from sam2rt.runtime.backends import GraphRunner, OrtRunner, load_runners, resolve_providers

TOY_SIZE = 128  # h = 8
TOY = C.GraphSpec(
    name="toy",
    inputs=(C.TensorSpec("x", "float32", ("B", 4)), C.TensorSpec("flag", "bool", ("B",)),
            C.TensorSpec("grid", "float32", (1, "h", "h"))),
    outputs=(C.TensorSpec("y", "float32", ("B", 4)), C.TensorSpec("g", "float32", (1, "h", "h"))),
)
Feeds = dict[str, np.ndarray]


def _toy_model(input_names: tuple[str, str, str] = ("x", "flag", "grid")) -> onnx.ModelProto:
    """y = x + flag[:, None], g = 2 * grid."""
    x, flag, grid = input_names
    inputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["B", 4]),
              helper.make_tensor_value_info(flag, TensorProto.BOOL, ["B"]),
              helper.make_tensor_value_info(grid, TensorProto.FLOAT, [1, "h", "h"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 4]),
               helper.make_tensor_value_info("g", TensorProto.FLOAT, [1, "h", "h"])]
    nodes = [helper.make_node("Cast", [flag], ["flag_f"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["flag_f", "axis1"], ["flag_col"]),
             helper.make_node("Add", [x, "flag_col"], ["y"]),
             helper.make_node("Mul", [grid, "two"], ["g"])]
    init = [helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
            helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])]
    model = helper.make_model(helper.make_graph(nodes, "toy", inputs, outputs, init),
                              opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.fixture(scope="module")
def toy_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("toy") / "toy.onnx"
    onnx.save(_toy_model(), str(path))
    return path


@pytest.fixture()
def toy(toy_path: Path) -> OrtRunner:
    return OrtRunner(TOY, TOY_SIZE, toy_path, threads=1)


def _toy_feeds(b: int = 2, seed: int = 0) -> Feeds:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((b, 4), dtype=np.float32), "flag": np.arange(b) % 2 == 0,
            "grid": rng.standard_normal((1, 8, 8), dtype=np.float32)}


def _toy_expected(feeds: Feeds) -> Feeds:
    return {"y": feeds["x"] + feeds["flag"][:, None].astype(np.float32), "g": 2 * feeds["grid"]}


# --------------------------------------------------------------------------- toy graph: running


def test_run_returns_every_output(toy: OrtRunner) -> None:
    feeds = _toy_feeds(b=3)
    result = toy.run(feeds)
    assert sorted(result) == ["g", "y"]
    for name, want in _toy_expected(feeds).items():
        assert result[name].dtype == np.float32
        np.testing.assert_array_equal(result[name], want)
    assert toy.output_shapes(feeds) == {"y": (3, 4), "g": (1, 8, 8)}


def test_returned_arrays_survive_later_runs(toy: OrtRunner) -> None:
    """Outputs ORT allocated are handed out without a copy; a later run must not overwrite them."""
    f1, f2 = _toy_feeds(seed=1), _toy_feeds(seed=2)
    r1 = toy.run(f1)
    r2 = toy.run(f2)
    np.testing.assert_array_equal(r1["y"], _toy_expected(f1)["y"])
    np.testing.assert_array_equal(r2["y"], _toy_expected(f2)["y"])


def _bad(name: str, value: Callable[[Feeds], object]) -> Callable[[Feeds], Feeds]:
    return lambda f: {**f, name: value(f)}


@pytest.mark.parametrize("mutate, message", [
    (lambda f: {k: v for k, v in f.items() if k != "flag"}, r"missing \['flag'\]"),
    (lambda f: {**f, "z": f["x"]}, r"unexpected \['z'\]"),
    (_bad("x", lambda f: f["x"].astype(np.float64)), r"'x' has dtype float64, expected float32"),
    (_bad("flag", lambda f: f["flag"].astype(np.int64)), r"'flag' has dtype int64, expected bool"),
    (_bad("x", lambda f: f["x"][None]), r"'x' has rank 3 .* expected \(B, 4\)"),
    (_bad("x", lambda f: np.zeros((2, 5), np.float32)), r"'x' has shape \(2, 5\), expected \(B, 4\)"),
    (_bad("grid", lambda f: np.zeros((1, 9, 9), np.float32)), r"'grid' .* expected \(1, 8, 8\)"),
    (_bad("flag", lambda f: np.ones(3, bool)), r"disagree on B \(objects\): 2 in 'x' .* 3 in 'flag'"),
    (lambda f: {**f, "x": np.zeros((0, 4), np.float32), "flag": np.ones(0, bool)}, r"at least 1"),
    (_bad("x", lambda f: np.asfortranarray(np.zeros((2, 4), np.float32))), r"not C-contiguous"),
    (_bad("x", lambda f: f["x"].tolist()), r"'x' must be a numpy array"),
])
def test_invalid_feeds(toy: OrtRunner, mutate: Callable[[Feeds], Feeds], message: str) -> None:
    with pytest.raises(Sam2rtError, match=message):
        toy.run(mutate(_toy_feeds()))
    with pytest.raises(Sam2rtError, match=message):
        toy.output_shapes(mutate(_toy_feeds()))


# --------------------------------------------------------------------------- toy graph: outputs in place


def test_output_written_in_place(toy: OrtRunner) -> None:
    feeds = _toy_feeds(b=2)
    y = np.full((2, 4), np.nan, np.float32)
    address = y.ctypes.data
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a copy fallback would warn
        result = toy.run(feeds, out={"y": y})
    assert result["y"] is y and y.ctypes.data == address
    np.testing.assert_array_equal(y, _toy_expected(feeds)["y"])
    np.testing.assert_array_equal(result["g"], _toy_expected(feeds)["g"])


def test_output_written_into_bank_slot(toy: OrtRunner) -> None:
    """A slot view bank[m] of a slot-major bank is contiguous: ORT writes it, other slots stay untouched."""
    bank = np.full((3, 2, 4), np.nan, np.float32)  # (M, B, 4)
    for m, seed in [(1, 1), (0, 2), (1, 3)]:
        feeds = _toy_feeds(seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = toy.run(feeds, out={"y": bank[m]})
        assert result["y"].ctypes.data == bank.ctypes.data + m * bank.strides[0]
        np.testing.assert_array_equal(bank[m], _toy_expected(feeds)["y"])
    assert np.isnan(bank[2]).all()


def test_strided_output_is_copied_with_one_warning(toy: OrtRunner) -> None:
    bank = np.full((2, 3, 4), np.nan, np.float32)  # (B, M, 4): bank[:, m] is strided
    slot = bank[:, 1]
    feeds = _toy_feeds()
    with pytest.warns(UserWarning, match=r"out\['y'\] is filled by a copy because it is not a C-contiguous"):
        result = toy.run(feeds, out={"y": slot})
    assert result["y"] is slot
    np.testing.assert_array_equal(bank[:, 1], _toy_expected(feeds)["y"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per runner and output
        toy.run(feeds, out={"y": slot})


@pytest.mark.parametrize("out, message", [
    ({"y": np.zeros((3, 4), np.float32)}, r"out\['y'\] is float32 \(3, 4\), expected float32 \(2, 4\)"),
    ({"y": np.zeros((2, 4), np.float64)}, r"out\['y'\] is float64"),
    ({"x": np.zeros((2, 4), np.float32)}, r"out names \['x'\] are not outputs"),
    ({"y": np.broadcast_to(np.zeros(4, np.float32), (2, 4))}, r"read-only"),
    ({"y": [[0.0] * 4] * 2}, r"must be a numpy array"),
])
def test_invalid_out(toy: OrtRunner, out: Feeds, message: str) -> None:
    with pytest.raises(Sam2rtError, match=message):
        toy.run(_toy_feeds(), out=out)


def test_out_overlapping_a_feed(toy: OrtRunner) -> None:
    feeds = _toy_feeds()
    with pytest.raises(Sam2rtError, match=r"overlaps feed 'x'"):
        toy.run(feeds, out={"y": feeds["x"]})


class _CopyingRunner(GraphRunner):
    """A backend that cannot write into caller buffers: ``run`` must copy and warn once."""

    def _run(self, feeds: Feeds, out: Feeds) -> Feeds:
        return _toy_expected(feeds)


def test_backend_that_cannot_write_in_place() -> None:
    runner = _CopyingRunner(TOY, TOY_SIZE)
    feeds, y = _toy_feeds(), np.zeros((2, 4), np.float32)
    with pytest.warns(UserWarning, match=r"backend could not write into it") as record:
        result = runner.run(feeds, out={"y": y})
    assert record[0].filename == __file__  # stacklevel points at the caller
    assert result["y"] is y
    np.testing.assert_array_equal(y, _toy_expected(feeds)["y"])


# --------------------------------------------------------------------------- sessions and providers


def test_corrupt_onnx(tmp_path: Path) -> None:
    path = tmp_path / "toy.onnx"
    path.write_bytes(b"\x08\x07not an onnx model" * 50)
    with pytest.raises(Sam2rtError, match=r"cannot load .*toy\.onnx.*re-export"):
        OrtRunner(TOY, TOY_SIZE, path)


def test_missing_onnx(tmp_path: Path) -> None:
    with pytest.raises(Sam2rtError, match=r"toy\.onnx does not exist; re-export"):
        OrtRunner(TOY, TOY_SIZE, tmp_path / "toy.onnx")


def test_onnx_not_matching_the_contract(tmp_path: Path) -> None:
    path = tmp_path / "toy.onnx"
    onnx.save(_toy_model(("x", "flags", "grid")), str(path))
    with pytest.raises(Sam2rtError, match=r"does not match the toy contract: its inputs .*'flags'.*re-export"):
        OrtRunner(TOY, TOY_SIZE, path)


def test_providers() -> None:
    assert resolve_providers() == ["CPUExecutionProvider"]
    assert resolve_providers("CPU") == ["CPUExecutionProvider"]
    with pytest.raises(Sam2rtError, match=r"provider 'tpu' is not available"):
        resolve_providers(["tpu"])
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert resolve_providers("cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        with pytest.raises(Sam2rtError, match=r"pip install onnxruntime-gpu"):
            resolve_providers("cuda")


def test_negative_threads(toy_path: Path) -> None:
    with pytest.raises(Sam2rtError, match=r"threads must be an integer >= 0"):
        OrtRunner(TOY, TOY_SIZE, toy_path, threads=-1)


def test_load_runners_errors(tmp_path: Path) -> None:
    with pytest.raises(Sam2rtError, match=r"unknown backend 'tensorflow'; valid backends: ort, ort-gpu, trt"):
        load_runners(tmp_path, backend="tensorflow")
    for backend in ("trt", "ort-gpu"):  # the model directory is checked before the GPU stack
        with pytest.raises(Sam2rtError, match=r"has no manifest\.json"):
            load_runners(tmp_path, backend=backend)
    with pytest.raises(Sam2rtError, match=r"has no manifest\.json"):
        load_runners(tmp_path)


# --------------------------------------------------------------------------- the real four graphs

REAL_SIZE = 256
REAL_DIMS = {"B": 2, "N": 3, "M": 3, "P": 2}


@pytest.fixture(scope="module")
def real(exported_tiny_256: Path) -> dict[str, GraphRunner]:
    return load_runners(exported_tiny_256, threads=2)


def _real_feeds(spec: C.GraphSpec, seed: int = 0) -> Feeds:
    """Valid feeds: random floats, all-true flags, zero indices (a valid temporal index and label)."""
    rng = np.random.default_rng(seed)
    dims = {**C.resolve_dims(REAL_SIZE), **REAL_DIMS}
    make = {"float32": lambda s: rng.standard_normal(s, dtype=np.float32),
            "bool": lambda s: np.ones(s, bool), "int32": lambda s: np.zeros(s, np.int32)}
    return {t.name: make[t.dtype](t.resolve(dims)) for t in spec.inputs}


def test_real_graphs_run(real: dict[str, GraphRunner]) -> None:
    for spec in C.GRAPHS:
        feeds = _real_feeds(spec)
        result = real[spec.name].run(feeds)
        assert {n: a.shape for n, a in result.items()} == real[spec.name].output_shapes(feeds)
        assert all(np.isfinite(a).all() for a in result.values()), spec.name


def _wrong_dtype(spec: C.GraphSpec, f: Feeds) -> tuple[Feeds, str]:
    t = next((t for t in spec.inputs if t.dtype != "float32"), spec.inputs[0])  # prefer a bool/int input
    wrong = {"float32": np.float64, "bool": np.uint8, "int32": np.int64}[t.dtype]
    return {**f, t.name: f[t.name].astype(wrong)}, f"'{t.name}' has dtype {np.dtype(wrong)}, expected {t.dtype}"


def _wrong_rank(spec: C.GraphSpec, f: Feeds) -> tuple[Feeds, str]:
    name = spec.inputs[0].name
    return {**f, name: f[name][None]}, f"'{name}' has rank {f[name].ndim + 1}"


def _wrong_spatial(spec: C.GraphSpec, f: Feeds) -> tuple[Feeds, str]:
    t = next(t for t in spec.inputs if any(d in ("S", "h", "h2", "h4", "hw") for d in t.shape))
    axis = next(i for i, d in enumerate(t.shape) if d in ("S", "h", "h2", "h4", "hw"))
    shape = list(f[t.name].shape)
    shape[axis] += 16
    return {**f, t.name: np.zeros(shape, f[t.name].dtype)}, f"'{t.name}' has shape .* \\(axis {axis} must be"


def _inconsistent_b(spec: C.GraphSpec, f: Feeds) -> tuple[Feeds, str]:
    t = [t for t in spec.inputs if "B" in t.shape][-1]
    shape = [3 if d == "B" else s for d, s in zip(t.shape, f[t.name].shape)]
    return {**f, t.name: np.zeros(shape, f[t.name].dtype)}, f"disagree on B .* 3 in '{t.name}'"


def _missing(spec: C.GraphSpec, f: Feeds) -> tuple[Feeds, str]:
    name = spec.inputs[-1].name
    return {k: v for k, v in f.items() if k != name}, f"missing \\['{name}'\\]"


def _extra(spec: C.GraphSpec, f: Feeds) -> tuple[Feeds, str]:
    return {**f, "memory_bank": np.zeros(1, np.float32)}, r"unexpected \['memory_bank'\]"


_MUTATIONS = [(g.name, m) for g in C.GRAPHS
              for m in (_wrong_dtype, _wrong_rank, _wrong_spatial, _inconsistent_b, _missing, _extra)
              if m is not _inconsistent_b or sum("B" in t.shape for t in g.inputs) >= 2]


@pytest.mark.parametrize("graph, mutate", _MUTATIONS, ids=[f"{g}-{m.__name__[1:]}" for g, m in _MUTATIONS])
def test_real_invalid_feeds(real: dict[str, GraphRunner], graph: str, mutate: Callable) -> None:
    spec = C.GRAPHS_BY_NAME[graph]
    feeds, message = mutate(spec, _real_feeds(spec))
    with pytest.raises(Sam2rtError, match=f"^{graph}: .*{message}"):
        real[graph].run(feeds)


def test_memory_encoder_writes_into_bank_slot(real: dict[str, GraphRunner]) -> None:
    runner = real["memory_encoder"]
    feeds = _real_feeds(C.MEMORY_ENCODER)
    plain = runner.run(feeds)["memory"]  # (B, hw, 64)
    M, hw = REAL_DIMS["M"], C.resolve_dims(REAL_SIZE)["hw"]
    assert runner.output_shapes(feeds)["memory"] == (REAL_DIMS["B"], hw, C.MEM_DIM)
    bank = np.full((M, REAL_DIMS["B"], hw, C.MEM_DIM), 7.0, np.float32)  # (M, B, hw, 64), slot-major
    slot = bank[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a copy fallback would warn
        result = runner.run(feeds, out={"memory": slot})
    assert result["memory"] is slot
    assert result["memory"].ctypes.data == bank.ctypes.data + bank.strides[0]
    np.testing.assert_array_equal(bank[1], plain)
    assert (bank[0] == 7.0).all() and (bank[2] == 7.0).all()
