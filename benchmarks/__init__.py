"""Side-by-side benchmarks of mixlake against scikit-learn and Spark MLlib.

Run ``python -m benchmarks`` from the repository root (``--quick`` for a smoke
run on small data); it writes ``benchmarks/RESULTS.md``.
"""
