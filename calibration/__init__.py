"""INT8 calibration (not built yet: see the precision issue)."""
