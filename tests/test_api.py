"""The top-level API: ``from sam2rt import ...`` finds every public name, lazily."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys

import pytest

import sam2rt

PUBLIC = ("VideoPredictor", "StreamTracker", "ImagePredictor", "AutomaticMaskGenerator", "load", "Sam2rtError",
          "__version__")
HEAVY = ("torch", "tensorrt", "onnxruntime", "cv2")


def _has_model_loader() -> bool:
    return importlib.util.find_spec("sam2rt.runtime.model") is not None


@pytest.mark.parametrize("name", [n for n in PUBLIC if n != "load"])
def test_public_name_resolves(name: str) -> None:
    value = getattr(sam2rt, name)
    assert value is not None
    if name not in ("__version__", "Sam2rtError"):
        assert value.__module__.startswith("sam2rt.runtime.") and value.__name__ == name


def test_load_is_the_model_loader() -> None:
    if not _has_model_loader():
        pytest.skip("sam2rt.runtime.model (the model loader of the live-tracker issue) is not in this tree yet")
    from sam2rt.runtime.model import load

    assert sam2rt.load is load


def test_missing_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Predictor'"):
        sam2rt.Predictor  # noqa: B018


def test_dir_and_all_list_the_public_names() -> None:
    assert set(PUBLIC) <= set(dir(sam2rt))
    assert set(sam2rt.__all__) == set(PUBLIC)
    assert sam2rt.__version__ == importlib.metadata.version("sam2rt")


def test_import_is_light_and_names_resolve_after() -> None:
    """In a fresh interpreter: nothing heavy after ``import sam2rt``; the classes still resolve afterwards."""
    names = [n for n in PUBLIC if n != "load" or _has_model_loader()]
    code = (f"import sys, sam2rt; heavy = [m for m in {HEAVY!r} if m in sys.modules]; "
            f"[getattr(sam2rt, n) for n in {names!r}]; print(' '.join(heavy) or 'none', 'onnxruntime' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    assert out == ["none", "True"]  # the second proves the classes really were imported afterwards
