"""Precision variants of an FP32 export: FP16 mixed precision (``fp16``) and calibrated INT8 QDQ graphs
(``sampling`` -> ``capture`` -> ``int8``), written as model directories by ``variant``."""
