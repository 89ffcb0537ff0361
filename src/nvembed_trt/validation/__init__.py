"""Parity validation of every runtime and recipe, and latency/throughput benchmarks with physical floors."""
