"""The `slurm-bounded` executor (plugins/slurm-bounded): the SLURM executor with a bounded wait between
job-status checks. Runs without a cluster; the SLURM end-to-end tests (tests/test_slurm.py) run the
workflow through it, as profiles/slurm names it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml

from tests.conftest import REPO

bounded = pytest.importorskip("snakemake_executor_plugin_slurm_bounded",
                              reason="plugins/slurm-bounded is not installed (make install)")
slurm = pytest.importorskip("snakemake_executor_plugin_slurm")


def test_snakemake_finds_the_executor_and_its_options():
    from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

    plugin = ExecutorPluginRegistry().get_plugin("slurm-bounded")
    assert plugin.executor is bounded.Executor and issubclass(bounded.Executor, slurm.Executor)
    assert plugin.common_settings is slurm.common_settings  # remote, shared file system: as the SLURM executor
    out = subprocess.run([sys.executable, "-m", "snakemake", "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=120).stdout
    for option in ("--slurm-bounded-max-seconds-between-status-checks",
                   "--slurm-bounded-init-seconds-before-status-checks", "--slurm-bounded-status-command"):
        assert option in out


def test_the_profile_uses_it_with_a_bound_of_at_most_its_first_wait():
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm-bounded"
    bound = profile["slurm-bounded-max-seconds-between-status-checks"]
    assert 1 <= bound <= profile["slurm-bounded-init-seconds-before-status-checks"]
    assert not [k for k in profile if k.startswith("slurm-") and not k.startswith("slurm-bounded-")]


@pytest.mark.parametrize("bound", [0, -3, 2.5, True, "5"])
def test_a_bound_that_is_not_a_whole_number_of_seconds_is_refused(bound):
    with pytest.raises(ValueError, match="max_seconds_between_status_checks"):
        bounded.ExecutorSettings(max_seconds_between_status_checks=bound)


def test_default_bound_is_the_documented_one():
    assert bounded.ExecutorSettings().max_seconds_between_status_checks == \
        bounded.DEFAULT_MAX_SECONDS_BETWEEN_STATUS_CHECKS == 5


def test_after_every_check_the_wait_is_capped_and_every_job_handed_back(monkeypatch):
    """The SLURM executor's check (replaced here: no cluster) backs off by 10 s per check in which no job
    finished; after the bounded executor's check the next wait is never above the bound, and the
    running jobs the SLURM executor hands back reach Snakemake unchanged."""
    settings = SimpleNamespace(max_seconds_between_status_checks=5)
    ex = bounded.Executor.__new__(bounded.Executor)  # no workflow, no thread: only the check is driven
    ex.workflow = SimpleNamespace(executor_settings=settings)
    ex._next_seconds_between_status_checks = 5
    jobs = [SimpleNamespace(external_jobid=str(k)) for k in range(3)]

    async def slurm_check(self, active_jobs):  # the SLURM executor's bookkeeping when no job finished
        self.next_seconds_between_status_checks = min(self.next_seconds_between_status_checks + 10, 180)
        for j in active_jobs[1:]:  # job 0 finished
            yield j

    monkeypatch.setattr(slurm.Executor, "check_active_jobs", slurm_check)

    async def one_check():
        return [j async for j in ex.check_active_jobs(jobs)]

    for _ in range(4):
        assert asyncio.run(one_check()) == jobs[1:]
        assert ex.next_seconds_between_status_checks == 5
    settings.max_seconds_between_status_checks = None  # no bound: the SLURM executor's own backoff
    asyncio.run(one_check())
    asyncio.run(one_check())
    assert ex.next_seconds_between_status_checks == 25


@pytest.mark.parametrize("next_s, bound, expected", [(45, 5, 5), (3, 5, 3), (45, None, 45), (5, 5, 5)])
def test_bounded_interval(next_s, bound, expected):
    assert bounded.bounded_interval(next_s, bound) == expected
