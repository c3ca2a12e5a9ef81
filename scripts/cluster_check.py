"""Does the SLURM cluster answer, and does it know the partitions and accounts a run asks for?

The workflow calls :func:`slurm_problems` before it submits anything (``onstart`` in
rules/common.smk, only with the SLURM executor), so a wrong profile or a cluster that is down gives
one error naming every missing piece, and no job, folder or file is made. Also a command line:

    python scripts/cluster_check.py --partition NAME [--account NAME] [--status-command sacct]

Standard library only (it runs inside Snakemake's main process).
"""

from __future__ import annotations

import argparse
import getpass
import shutil
import subprocess
import sys
from collections.abc import Iterable

TIMEOUT_S = 20


def _run(*cmd: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(cmd, 124, "", f"{cmd[0]}: no answer within {TIMEOUT_S} s")


def _first_line(proc: subprocess.CompletedProcess) -> str:
    text = (proc.stderr or proc.stdout or "").strip()
    return text.splitlines()[0] if text else f"exit status {proc.returncode}"


def slurm_problems(partitions: Iterable[str], accounts: Iterable[str], status_command: str | None) -> list[str]:
    """Every reason the cluster cannot run the jobs, in words; empty when it can.

    ``partitions`` / ``accounts``: what the jobs ask for (``slurm_partition`` / ``slurm_account``);
    ``status_command``: the SLURM executor's job status command (``sacct`` or ``squeue``).
    """
    missing_tools = [t for t in ("sbatch", "scontrol", "sinfo") if shutil.which(t) is None]
    if missing_tools:
        return [f"SLURM client commands not found: {', '.join(missing_tools)} (is this a SLURM submit host?)"]
    if shutil.which("munge") and shutil.which("unmunge"):
        munge = subprocess.run("munge -n | unmunge", shell=True, capture_output=True, text=True, timeout=TIMEOUT_S)
        if munge.returncode != 0:
            return [f"munge is not running on this host (munged): SLURM cannot authenticate: {_first_line(munge)}"]
    ping = _run("scontrol", "ping")
    if ping.returncode != 0 or "UP" not in ping.stdout:
        return [f"slurmctld does not answer (scontrol ping: {_first_line(ping)})"]

    problems = []
    known = _run("sinfo", "-h", "-o", "%R")
    known_partitions = sorted(set(known.stdout.split()))
    for partition in sorted(set(partitions)):
        if partition not in known_partitions:
            problems.append(f"partition '{partition}' (resource slurm_partition, set in the profile) does not "
                            f"exist on this cluster; partitions: {', '.join(known_partitions) or 'none'}")

    accounts = sorted(set(accounts))
    if accounts or status_command == "sacct":
        sacct = _run("sacct", "-n", "-X", "-S", "now") if shutil.which("sacct") else None
        if sacct is None or sacct.returncode != 0:
            if status_command == "sacct":
                why = "not installed" if sacct is None else _first_line(sacct)
                problems.append(f"sacct does not answer ({why}): this cluster runs no accounting; run with "
                                "`--slurm-bounded-status-command squeue` (profile key slurm-bounded-status-command: "
                                "squeue; "
                                "the cluster's MinJobAge must keep finished jobs visible to squeue)")
        elif accounts:
            user = getpass.getuser()
            assoc = _run("sacctmgr", "-n", "-P", "show", "associations", f"user={user}", "format=account")
            mine = sorted(set(assoc.stdout.split()))
            for account in accounts:
                if assoc.returncode == 0 and account not in mine:
                    problems.append(f"account '{account}' (resource slurm_account, set in the profile) is not an "
                                    f"account of user {user} on this cluster; accounts: {', '.join(mine) or 'none'}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partition", action="append", default=[])
    parser.add_argument("--account", action="append", default=[])
    parser.add_argument("--status-command", default=None, choices=("sacct", "squeue"))
    args = parser.parse_args(argv)
    problems = slurm_problems(args.partition, args.account, args.status_command)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems:
        print("cluster OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
