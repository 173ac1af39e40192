"""The comparison report of a sweep: `python -m rnnsweep.report` (see __main__)."""
