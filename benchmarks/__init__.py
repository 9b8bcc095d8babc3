"""fundguard benchmarks, run from the repository root: ``python -m benchmarks.<name>``.

Not installed with the package. Results (Markdown tables, PNG figures) go to
``benchmarks/results/``.
"""
