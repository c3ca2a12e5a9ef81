"""Snakemake executor ``slurm-bounded``: snakemake-executor-plugin-slurm with a bounded status-check interval.

The SLURM executor checks job status first ``init_seconds_before_status_checks`` after a submission,
then adds 10 s to the interval after every check in which no job finished, up to 180 s. A job is
therefore seen finished up to a whole interval after it ends: 25 s late for a 35 s job with the
default start of 10 s, minutes late for long jobs, and the next job waits that long. This executor
is the same executor (every ``--slurm-bounded-*`` option is the SLURM executor's option of that
name) that never waits more than ``max_seconds_between_status_checks`` between two checks. Each check
is one ``sacct`` (or ``squeue``) call for all running jobs, so a bound of a few seconds costs the
cluster little.

Installed on its own (not in editable mode): Snakemake finds executor plugins among the top-level
modules on ``sys.path``. (No ``from __future__ import annotations``: Snakemake reads the settings'
field types at run time to build the command-line options.)
"""

from dataclasses import dataclass, field
from typing import Optional

from snakemake_executor_plugin_slurm import Executor as SlurmExecutor
from snakemake_executor_plugin_slurm import ExecutorSettings as SlurmExecutorSettings
from snakemake_executor_plugin_slurm import common_settings  # noqa: F401  (required by Snakemake)

DEFAULT_MAX_SECONDS_BETWEEN_STATUS_CHECKS = 5


@dataclass
class ExecutorSettings(SlurmExecutorSettings):
    """The SLURM executor's settings plus the bound on the interval between status checks."""

    max_seconds_between_status_checks: Optional[int] = field(  # noqa: UP045 (Snakemake reads typing.Optional)
        default=DEFAULT_MAX_SECONDS_BETWEEN_STATUS_CHECKS,
        metadata={
            "help": "Longest wait, in seconds, between two job-status checks (one sacct or squeue call "
            f"for all running jobs). Default {DEFAULT_MAX_SECONDS_BETWEEN_STATUS_CHECKS}.",
            "env_var": False,
            "required": False,
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        bound = self.max_seconds_between_status_checks
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int) or bound < 1):
            raise ValueError(f"max_seconds_between_status_checks={bound!r}: expected a whole number of "
                             "seconds >= 1")


def bounded_interval(next_seconds: float, bound_seconds: Optional[int]) -> float:  # noqa: UP045
    """The interval to the next status check: the SLURM executor's choice, never above the bound."""
    return next_seconds if bound_seconds is None else min(next_seconds, bound_seconds)


class Executor(SlurmExecutor):
    """The SLURM executor; after every status check the next interval is capped (see module docstring)."""

    async def check_active_jobs(self, active_jobs):  # type: ignore[no-untyped-def]
        async for job in super().check_active_jobs(active_jobs):
            yield job
        self.next_seconds_between_status_checks = bounded_interval(
            self.next_seconds_between_status_checks,
            self.workflow.executor_settings.max_seconds_between_status_checks)
