"""sam2rt: SAM 2 video segmentation deployed for real time.

The public API is one import away::

    from sam2rt import VideoPredictor, StreamTracker, ImagePredictor, AutomaticMaskGenerator, load, Sam2rtError

Importing the package loads neither torch, tensorrt nor onnxruntime: the classes and ``load`` are imported
on first use (module ``__getattr__``), so ``import sam2rt`` stays instant and CLI help does not pay for them.
"""

from __future__ import annotations

import importlib as _importlib
from types import ModuleType as _ModuleType
from typing import TYPE_CHECKING, Any

from sam2rt.errors import Sam2rtError

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_LAZY = {
    "VideoPredictor": "sam2rt.runtime.predictor",
    "StreamTracker": "sam2rt.runtime.stream",
    "ImagePredictor": "sam2rt.runtime.image_predictor",
    "AutomaticMaskGenerator": "sam2rt.runtime.automatic",
    "load": "sam2rt.runtime.model",
}
__all__ = ["VideoPredictor", "StreamTracker", "ImagePredictor", "AutomaticMaskGenerator", "load", "Sam2rtError", "__version__"]

if TYPE_CHECKING:  # editors and type checkers see the real objects
    from sam2rt.runtime.automatic import AutomaticMaskGenerator
    from sam2rt.runtime.image_predictor import ImagePredictor
    from sam2rt.runtime.model import load
    from sam2rt.runtime.predictor import VideoPredictor
    from sam2rt.runtime.stream import StreamTracker


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'sam2rt' has no attribute {name!r}")
    try:
        module = _importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise  # a dependency is missing: its own message says which
        raise AttributeError(f"sam2rt.{name} is not available: this installation has no {module_name}") from None
    value = getattr(module, name)
    globals()[name] = value  # later accesses skip __getattr__
    return value


def __dir__() -> list[str]:
    """The public names, and the submodules imported so far (``sam2rt.errors``, ``sam2rt.runtime``, ...)."""
    submodules = {n for n, v in globals().items() if isinstance(v, _ModuleType) and not n.startswith("_")}
    return sorted(set(__all__) | submodules)
