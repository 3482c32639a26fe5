"""ONNX -> TensorRT engines: build configuration, optimization profiles, the builder and the engine cache.

Only :mod:`sam2rt.engines.builder` imports TensorRT, and only when a build starts; everything else here
(profiles, cache keys, refusal logic, the preprocessing graph) runs without it.
"""
