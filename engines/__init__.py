"""ONNX -> TensorRT engines (not built yet: see the TensorRT issue)."""
