"""Latency/FPS/memory benchmarks (not built yet: see the benchmarks issue)."""
