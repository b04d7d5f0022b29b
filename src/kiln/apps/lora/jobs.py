"""Job handlers of the LoRA surface (imported by `serve` and `kiln worker`)."""

from kiln.apps.lora.archive import service as archive_service  # noqa: F401  (lora.backup)
from kiln.apps.lora.generation import jobs as generation_jobs  # noqa: F401  (lora.generate, lora.deliver)
from kiln.apps.lora.library import hashing, scan  # noqa: F401  (lora.hash, lora.scan)
