"""Performance benchmarks for jola_lens (``python -m benchmarks.run``; see ``benchmarks/run.py``)."""
