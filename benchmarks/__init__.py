"""Measurement side by side with the official predictor: ``bench`` (latency/FPS/memory) and ``parity`` (IoU).

These modules import torch and the official ``sam2`` for the reference runs (the ``export`` extra).
"""
