"""Speed and memory benchmarks: ``python -m benchmarks`` runs the suite (see benchmarks/suite.py)."""
