"""Load tests for Tierserve: locust scenarios, the headless runner, summaries, plots, benchmarks."""
