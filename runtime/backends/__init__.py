"""Execution backends: the graph-runner interface, ONNX Runtime, TensorRT, the CUDA layer and the executors
that keep a tracking step's tensors on one device."""

from sam2rt.runtime.backends.ort import BACKENDS, OrtGpuRunner, OrtRunner, load_runners, resolve_providers
from sam2rt.runtime.backends.runner import GraphRunner

__all__ = ["BACKENDS", "GraphRunner", "OrtGpuRunner", "OrtRunner", "load_runners", "resolve_providers"]
