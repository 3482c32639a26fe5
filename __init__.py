"""Not the sam2rt package: the root of a sam2rt clone, imported as ``sam2rt`` by mistake.

Python runs this file only when a script runs from the folder that *contains* a clone named ``sam2rt``:
the current folder comes first on ``sys.path``, so ``import sam2rt`` finds the clone's root before the
installed package (an editable install's finder is asked last). Without this file the clone's root would
become an empty namespace package (``module 'sam2rt' has no attribute 'VideoPredictor'``). Here the
installed package is looked up past this folder and put in its place; where none is installed, the
ImportError says what to do. The package itself is ``sam2rt/`` (pyproject's package-dir); this file is
not part of it.
"""

import importlib.machinery
import importlib.util
import os
import sys

if __name__ == "sam2rt":
    _clone = os.path.dirname(os.path.abspath(__file__))
    _outside = [p for p in sys.path if os.path.abspath(p or os.curdir) != os.path.dirname(_clone)]
    _spec = importlib.machinery.PathFinder.find_spec("sam2rt", _outside)  # a regular install
    if _spec is None or _spec.origin is None:
        for _finder in sys.meta_path:  # an editable install's finder
            if _finder is importlib.machinery.PathFinder or not hasattr(_finder, "find_spec"):
                continue
            _spec = _finder.find_spec("sam2rt", None)
            if _spec is not None and _spec.origin is not None:
                break
    if _spec is None or _spec.origin is None or os.path.abspath(_spec.origin) == os.path.abspath(__file__):
        raise ImportError(f"`import sam2rt` found the folder {_clone} (a clone of the repository) instead of the "
                          f"installed package, and no installed sam2rt was found: install it (`make install`, or "
                          f"`pip install -e {_clone}`), or run your script from another folder")
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["sam2rt"] = _module  # the import statement returns what sys.modules holds after this file
    _spec.loader.exec_module(_module)
