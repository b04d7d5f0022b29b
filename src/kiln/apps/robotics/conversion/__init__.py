"""Conversion engine: recordings + a spec document -> Parquet / TFRecord datasets.

Public entry points: `run_conversion` (files + manifests + reports, streaming, multi-process)
and `preview` (first rows of a spec, independent of the recording's length). The HTTP side of
the domain is `router.py` (conversions, outputs) over `service.py` and `outputs.py`.
"""

from kiln.apps.robotics.conversion.engine import ConversionResult, OutputFile, run_conversion
from kiln.apps.robotics.conversion.pipeline import ConversionCancelled
from kiln.apps.robotics.conversion.preview import PreviewResult, preview

__all__ = ["ConversionCancelled", "ConversionResult", "OutputFile", "PreviewResult", "preview", "run_conversion"]
