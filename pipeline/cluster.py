"""Before a SLURM run submits anything: does the cluster answer, and does it know what the jobs ask for?"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

SLURM_EXECUTORS = ("slurm", "slurm-bounded")
"""Executors that submit to SLURM (profiles/slurm uses slurm-bounded; see plugins/slurm-bounded)."""
CHECK_MODULE = "_xbarchar_cluster_check"


def cluster_check_module(base_dir: str | Path) -> ModuleType:
    """scripts/cluster_check.py (standard library only; also a command line), loaded by path."""
    if CHECK_MODULE not in sys.modules:
        spec = importlib.util.spec_from_file_location(CHECK_MODULE, Path(base_dir) / "scripts" / "cluster_check.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[CHECK_MODULE] = module
    return sys.modules[CHECK_MODULE]


def cluster_problems(executor: str | None, job_resources: Iterable[Mapping[str, Any]], status_command: str | None,
                     base_dir: str | Path) -> list[str]:
    """Every missing piece (munge, slurmctld, a partition or account the jobs name, the status command)
    when ``executor`` submits to SLURM; nothing for any other executor. Makes no job, folder or file."""
    if executor not in SLURM_EXECUTORS:
        return []
    resources = list(job_resources)
    partitions = {r.get("slurm_partition") for r in resources} - {None}
    accounts = {r.get("slurm_account") for r in resources} - {None}
    return cluster_check_module(base_dir).slurm_problems(partitions, accounts, status_command)
