"""Job handlers of the LoRA surface (imported by `serve` and `kiln worker`)."""

from kiln.apps.lora.library import scan  # noqa: F401  (registers lora.scan)
