"""RunAPI's benchmark harness: loopback upstream, nginx floor, the gateway, side by side.

Run it with `python bench/run.py [--quick] [--postgres] [--profile] [--soak SECONDS]`;
results go to `bench/RESULTS.md`. The building blocks (process control and /proc
readings, servers, load clients) are importable so `tests/test_bench_smoke.py` can
exercise them.
"""
