"""Benchmarks that print numbers: overhead vs bare vLLM, router decision cost, cold start."""
