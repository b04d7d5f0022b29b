"""Durable jobs: `job_handler`, `periodic`, `startup_cleanup`, `JobContext`, `JobService` and the job models."""

from kiln.core.jobs.context import JobCancelled, JobContext, TransientJobError
from kiln.core.jobs.models import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, Job, Worker, job_to_dict
from kiln.core.jobs.registry import job_handler, periodic, startup_cleanup
from kiln.core.jobs.service import JOB_UPDATED, JobError, JobNotFound, JobService

__all__ = [
    "CANCELLED",
    "FAILED",
    "JOB_UPDATED",
    "QUEUED",
    "RUNNING",
    "SUCCEEDED",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobNotFound",
    "JobService",
    "TransientJobError",
    "Worker",
    "job_handler",
    "job_to_dict",
    "periodic",
    "startup_cleanup",
]
