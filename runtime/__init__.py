"""Backends, memory bank, video predictor and stream tracker. Imports no torch."""
