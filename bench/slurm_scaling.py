"""SLURM scaling of the SPICE stage: a 128x128 non-linear (sinh) dataset, its shards as SLURM jobs, run
with 1 and with 2 job slots (`--jobs N`) through `snakemake --profile profiles/slurm`.

Usage (a SLURM cluster must answer; `scripts/local_slurm.sh start` makes the local one)::

    python bench/slurm_scaling.py --json bench/slurm_scaling.json
    python bench/slurm_scaling.py --matrices 4 --vectors 32 --slots 1 2 --partition xbarchar --account xbarchar

Prints and writes: wall time per slot count and the ratio; per job the ngspice time (its benchmark
file), the SLURM queue wait and the job-step start-up (sacct), and the workflow's overhead per job
((wall - sum of job times) / jobs with one slot: submission, status polling, job-step start-up);
and, from the measured per-vector shard time, the time for a 24 x 256-vector dataset of the same
array on a cluster with --cluster-cores cores (one shard per conductance matrix: 24 shards at most).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CIRCUIT = {"preset": "paper1_128_w5", "netlist": "data/circuits/memristor_sinh.cir"}
"""Paper-1 128x128 array (1 kOhm driver and sense, 5 Ohm wire segments) with the sinh memristor cell."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--matrices", type=int, default=4, help="conductance matrices = shards = SLURM jobs (4)")
    p.add_argument("--vectors", type=int, default=32, help="input vectors per matrix (32)")
    p.add_argument("--slots", type=int, nargs="+", default=[1, 2], help="job slots to compare (1 2)")
    p.add_argument("--partition", default="xbarchar", help="slurm_partition (local cluster: xbarchar)")
    p.add_argument("--account", default="xbarchar", help="slurm_account (local cluster: xbarchar)")
    p.add_argument("--cluster-cores", type=int, default=64, help="cores of the cluster in the estimate (64)")
    p.add_argument("--json", default="", help="write every figure here")
    return p.parse_args(argv)


def write_inputs(folder: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """A profile (profiles/slurm with partition and account) and a config with the one circuit."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    profile["default-resources"].update(slurm_partition=args.partition, slurm_account=args.account)
    (folder / "profile").mkdir()
    (folder / "profile" / "config.yaml").write_text(yaml.safe_dump(profile))
    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    cfg["circuits"] = {"sinh128": {**CIRCUIT, "sampling": {
        "sampler": "uniform", "n_conductance": args.matrices, "n_vectors": args.vectors,
        "n_shards": args.matrices, "solver": "sweep", "seed": 1}}}
    cfg_path = folder / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    return folder / "profile", cfg_path


def sacct_times(job_ids: list[str]) -> list[dict[str, float]]:
    """Per SLURM job: queue wait (submit -> start) and elapsed seconds."""
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", ",".join(job_ids), "-o", "JobID,Submit,Start,End"],
                         capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.strip().splitlines():
        _, submit, start, end = line.split("|")
        t = [datetime.fromisoformat(x).timestamp() for x in (submit, start, end)]
        rows.append({"queue_s": t[1] - t[0], "elapsed_s": t[2] - t[1]})
    return rows


def run_once(slots: int, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="xbarchar-scaling-") as tmp:
        folder = Path(tmp)
        profile, cfg_path = write_inputs(folder, args)
        results = folder / "results"
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg["results_dir"] = str(results)
        cfg_path.write_text(yaml.safe_dump(cfg))
        target = results / "spice" / "sinh128.h5"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--profile", str(profile), "--jobs", str(slots),
                               "--configfile", str(cfg_path), "--replace-workflow-config", str(target)],
                              cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        log = proc.stdout + proc.stderr
        if proc.returncode:
            raise SystemExit(f"snakemake failed with {slots} slot(s):\n{log[-4000:]}")
        job_ids = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
        shard_s = []
        for tsv in sorted((results / "benchmarks" / "spice" / "sinh128").glob("shard*.tsv")):
            with open(tsv) as fh:
                shard_s.append(float(next(csv.DictReader(fh, delimiter="\t"))["s"]))
        slurm = sacct_times(job_ids)
    return {"slots": slots, "wall_s": wall, "jobs": len(job_ids), "shard_s": shard_s, "slurm_jobs": slurm,
            "load_avg_1min": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    runs = [run_once(n, args) for n in args.slots]
    base = runs[0]
    # Per-job overhead with one slot: everything that is not a job's own work, per job.
    job_work = sum(base["shard_s"]) + sum(r["elapsed_s"] for r in base["slurm_jobs"][len(base["shard_s"]):])
    per_job_overhead = (base["wall_s"] - job_work) / base["jobs"]
    n_shards = len(base["shard_s"])  # the shards are submitted first, the merge job last
    startup = statistics.median(r["elapsed_s"] for r in base["slurm_jobs"][:n_shards]) - statistics.median(base["shard_s"])
    s_per_vector = statistics.median(base["shard_s"]) / args.vectors  # one matrix per shard
    est_shards = 24
    est_waves = -(-est_shards // args.cluster_cores)
    est_s = est_waves * (256 * s_per_vector + startup) + per_job_overhead
    print(f"128x128 sinh (Paper-1 peripherals), {args.matrices} matrices x {args.vectors} vectors, one shard "
          f"per matrix; profiles/slurm, partition {args.partition}")
    print("| job slots | wall s | jobs | median shard s (ngspice) | median queue wait s | x 1 slot |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in runs:
        print(f"| {r['slots']} | {r['wall_s']:.1f} | {r['jobs']} | {statistics.median(r['shard_s']):.1f} | "
              f"{statistics.median(x['queue_s'] for x in r['slurm_jobs']):.1f} | {base['wall_s'] / r['wall_s']:.2f} |")
    print(f"overhead per job (1 slot: (wall - job times) / jobs): {per_job_overhead:.1f} s; job-step start-up "
          f"(median sacct elapsed - median ngspice time): {startup:.1f} s")
    print(f"ngspice per vector: {s_per_vector:.3f} s -> a 24 x 256-vector dataset: {24 * 256 * s_per_vector / 60:.0f} "
          f"min on one core; on {args.cluster_cores} cores (24 shards of 256 vectors in {est_waves} wave(s)): "
          f"{est_s / 60:.1f} min")
    if args.json:
        out = {"settings": vars(args), "runs": runs, "per_job_overhead_s": per_job_overhead,
               "job_step_startup_s": startup, "s_per_vector": s_per_vector,
               "ratio": {r["slots"]: base["wall_s"] / r["wall_s"] for r in runs},
               "estimate_24x256_s": {"one_core": 24 * 256 * s_per_vector, f"{args.cluster_cores}_cores": est_s}}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
