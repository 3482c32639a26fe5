"""PyTorch -> ONNX: one export wrapper per graph, checkpoint loading, verification, manifest writing.

Needs the ``export`` extra (torch, onnx, the official sam2 package).
"""
