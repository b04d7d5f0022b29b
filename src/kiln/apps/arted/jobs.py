"""Job handlers of the arted surface (imported by `serve` and `kiln worker`)."""

from kiln.apps.arted.pipeline import jobs as pipeline_jobs  # noqa: F401  (arted.run)
