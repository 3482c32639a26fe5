"""sam2rt: SAM 2 video segmentation deployed for real time.

Importing the package loads neither torch nor tensorrt; the runtime classes are imported lazily.
"""

from sam2rt.errors import Sam2rtError

__version__ = "0.1.0"
__all__ = ["Sam2rtError", "__version__"]
