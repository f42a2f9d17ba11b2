"""Peers a user would pick instead of an edgedistill student, as models the same benchmarks run."""
