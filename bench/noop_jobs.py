"""The no-op job both benchmarks run: a Kiln handler and the equivalent Celery task."""

from __future__ import annotations

import os

from kiln.core.jobs import JobContext, job_handler


@job_handler("bench.noop", surface="bench", max_attempts=1)
async def noop(ctx: JobContext, payload: dict) -> dict:
    return {"n": payload.get("n")}


def celery_app():
    from celery import Celery

    url = os.environ.get("BENCH_CELERY_REDIS", "redis://127.0.0.1:6379/13")
    app = Celery("bench", broker=url, backend=url)
    app.conf.update(worker_prefetch_multiplier=4, task_ignore_result=False, result_expires=600)

    @app.task(name="bench.noop")
    def celery_noop(n: int) -> dict:
        return {"n": n}

    return app


app = celery_app() if os.environ.get("BENCH_CELERY") else None
