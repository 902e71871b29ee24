"""Benchmarks: the memory layer against the naive approach and the round-trip floor."""
