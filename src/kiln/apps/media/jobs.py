"""Job handlers and periodic tasks of the media surface (imported by `serve` and `kiln worker`)."""

from typing import Any

from kiln.apps.media.config import MediaSettings
from kiln.apps.media.dashboard.system_load import record_load_sample
from kiln.apps.media.processing import jobs as processing_jobs  # noqa: F401  (media.process)
from kiln.apps.media.processing import publishing  # noqa: F401  (media.publish, media.publish_sweep)
from kiln.apps.media.processing.reaper import fail_interrupted_uploads, reap
from kiln.core.jobs import periodic, startup_cleanup

_defaults = MediaSettings()


@periodic("media.reaper", every=_defaults.reaper_every_seconds)
async def reaper_task(kernel: Any) -> None:
    await reap(kernel)


startup_cleanup("media.interrupted_uploads")(fail_interrupted_uploads)


@periodic("media.load_sample", every=_defaults.load_sample_seconds)
async def load_sample_task(kernel: Any) -> None:
    await record_load_sample(kernel)
