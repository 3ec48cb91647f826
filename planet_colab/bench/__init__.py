"""Benchmarks: `python -m planet_colab.bench <what>`; each prints lines, then one JSON object last."""
