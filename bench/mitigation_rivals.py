"""The light rivals of BN-only mitigation, at equal parameters and equal calibration data: one study run.

Usage::

    python bench/mitigation_rivals.py --config config/rivals.yaml --json bench/mitigation_rivals.json

The config is merged on top of ``config/config.yaml`` (as ``snakemake --configfile`` merges it) and
checked as ``snakemake -n`` checks it. The study runs the scenarios ``config/rivals.yaml`` itself defines
(not the default run's), each on the circuits it names, with the config's ``evaluation`` settings: the
software model is trained by ``python -m dnn train``, and every scenario x circuit is evaluated by
``python -m dnn evaluate`` with the circuit's surrogate from ``--surrogates`` (the default run's
``results/surrogate/NAME.h5``, checked against the circuit), or, for a circuit without one, its exact array
physics (``--mvm exact``; about 25x slower to bind here). ``dnn.report_rivals`` then writes the accuracy
and cost tables, the statements (decided on the t-interval over seeds) and the figure.
The JSON holds the table's rows, the statements, the wall time of each step and the command; an evaluation
file an earlier run left is reused, listed under ``reused``, and its time is not in this run's.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_dnn  # noqa: E402

from dnn.report_rivals import accuracy_table, cost_table, load_rows, plot, statements, statements_table  # noqa: E402
from pipeline.config import crossbar_settings, validate_config  # noqa: E402

log = logging.getLogger("mitigation_rivals")
REPO = Path(__file__).resolve().parents[1]


def merged_config(path: str, base: str = "config/config.yaml") -> tuple[dict[str, Any], dict[str, Any]]:
    """(the config merged onto ``base`` as Snakemake merges configfiles, the file's own entries)."""
    def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out

    own = yaml.safe_load((REPO / path).read_text())
    config = merge(yaml.safe_load((REPO / base).read_text()), own)
    validate_config(config, REPO)
    return config, own


def run(args: argparse.Namespace) -> dict[str, Any]:
    config, own = merged_config(args.config)
    out_dir = REPO / args.results
    (out_dir / "models").mkdir(parents=True, exist_ok=True)
    model_name = args.model_name or next(iter(own.get("models") or config["models"]))
    model_path = out_dir / "models" / f"{model_name}.pt"
    steps: dict[str, float] = {}
    t0 = time.perf_counter()
    if not model_path.exists():
        log.info("training %s", model_name)
        subprocess.run([sys.executable, "-m", "dnn", "train", "--params-json", json.dumps(config["models"][model_name]),
                        "--threads", str(args.threads), "--out", str(model_path), "--no-progress"],
                       check=True, cwd=REPO)
        steps["train_s"] = time.perf_counter() - t0
    scenarios = args.scenario or list(own["scenarios"])
    files: list[Path] = []
    reused = [] if "train_s" in steps else [str(model_path.relative_to(REPO))]  # an earlier run's model
    for scenario in scenarios:
        entry = config["scenarios"][scenario]
        for circuit in entry.get("circuits") or list(config["circuits"]):
            out = out_dir / "eval" / circuit / model_name / f"{scenario}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            t1 = time.perf_counter()
            if not out.exists():
                surrogate = REPO / args.surrogates / f"{circuit}.h5"
                tile = ["--surrogate", str(surrogate)] if surrogate.exists() else ["--mvm", "exact"]
                cmd = [sys.executable, "-m", "dnn", "evaluate", "--model", str(model_path), *tile,
                       "--circuit-name", circuit, "--circuit", json.dumps(config["circuits"][circuit]),
                       "--scenario", scenario, "--crossbar-json", json.dumps(crossbar_settings(config, scenario)),
                       "--evaluation-json", json.dumps(config["evaluation"]), "--threads", str(args.threads),
                       "--out", str(out), "--no-progress"]
                if entry.get("device_preset"):
                    cmd += ["--device-preset", entry["device_preset"]]
                log.info("evaluating %s on %s", scenario, circuit)
                subprocess.run(cmd, check=True, cwd=REPO)
                steps[f"{scenario}/{circuit}_s"] = time.perf_counter() - t1
            else:  # an earlier run's file: its time is not in this run's
                reused.append(str(out.relative_to(REPO)))
            files.append(out)
    rows = load_rows(files)
    table = "\n\n".join([accuracy_table(rows), cost_table(rows), statements_table(statements(rows))])
    print(table, flush=True)
    if args.figure:
        plot(rows, REPO / args.figure)
    if args.table:
        (REPO / args.table).write_text(table + "\n")
    return {"command": " ".join(["python", "bench/mitigation_rivals.py", *sys.argv[1:]]), "config": args.config,
            "model": model_name, "scenarios": scenarios, "wall_s": time.perf_counter() - t0, "steps_s": steps,
            "reused": reused,
            "threads": args.threads, "evaluation": config["evaluation"], "rows": rows,
            "statements": statements(rows)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="config/rivals.yaml", help="study config, merged onto config/config.yaml")
    p.add_argument("--model-name", default=None, help="model of the config (default: the study config's first)")
    p.add_argument("--scenario", action="append", default=None, help="scenario (repeatable; default the study's)")
    p.add_argument("--results", default="results/rivals", help="folder of the model and the evaluation files")
    p.add_argument("--surrogates", default="results/surrogate",
                   help="folder of circuit surrogates (NAME.h5, the default run's); a circuit without one: exact physics")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--figure", default="docs/mitigation_rivals.png")
    p.add_argument("--table", default=None, help="also write the markdown table here")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result = run(args)
    if args.json:
        bench_dnn.write_json(args.json, result)


if __name__ == "__main__":
    main()
