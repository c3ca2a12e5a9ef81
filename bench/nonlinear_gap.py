"""DNN-level gap between each circuit's surrogate and its exact physics, for the non-linear operating points.

Usage (after building the surrogates and the model of the config, see ``config/nonlinear_gap.yaml``)::

    python bench/nonlinear_gap.py --config config/nonlinear_gap.yaml --json bench/nonlinear_gap.json

For every circuit of the config (or those named with ``--circuit``), ``bench/bench_dnn.py``'s accuracy
measurement (``--no-timing --bn-adapt-only``) of the config's model through the ideal-quantized crossbar, the circuit's
surrogate (``RESULTS/surrogate/NAME.h5``) and its exact physics (``dnn.evaluate.exact_tile_model``: the
batched Newton solve for sinh/1T1R cells) after BN adaptation, with the ADC
settings of ``--crossbar-json``. Prints one table; the gap |surrogate - exact| after BN adaptation is
judged against the 1-point target. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_dnn  # noqa: E402

DEFAULT_CROSSBAR = '{"adc_range_fraction": 0.25}'
"""The default experiment's ADC range (25% of the worst-case ideal column current)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="config/nonlinear_gap.yaml", help="workflow config with circuits and one model")
    p.add_argument("--model-name", default=None, help="model of the config (default: its only model)")
    p.add_argument("--circuit", action="append", default=None, help="circuit of the config (repeatable; default all)")
    p.add_argument("--calibration-samples", type=int, default=128, help="training images for BN adaptation")
    p.add_argument("--n-test", type=int, default=256, help="test images (0: the whole test split)")
    p.add_argument("--crossbar-json", default=DEFAULT_CROSSBAR, help="CrossbarConfig overrides of every mode")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write every figure to this path")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = yaml.safe_load(Path(args.config).read_text())
    results = Path(config.get("results_dir", "results"))
    models = config["models"]
    model_name = args.model_name or next(iter(models))
    circuits = args.circuit or list(config["circuits"])
    rows = {}
    for name in circuits:
        entry = {k: v for k, v in config["circuits"][name].items() if k not in ("sampling", "surrogate")}
        argv = ["--model", str(results / "models" / f"{model_name}.pt"),
                "--surrogate", str(results / "surrogate" / f"{name}.h5"), "--circuit-name", name,
                "--circuit", json.dumps(entry), "--no-timing", "--no-progress", "--threads", str(args.threads),
                "--calibration-samples", str(args.calibration_samples), "--crossbar-json", args.crossbar_json,
                "--seed", str(args.seed), "--bn-adapt-only"]
        if args.n_test:
            argv += ["--n-test", str(args.n_test)]
        rows[name] = bench_dnn.run(bench_dnn.parse_args(argv), say=lambda text: None)
        print(row_line(name, rows[name]), flush=True)
        summary = {n: summarize(r) for n, r in rows.items()}
        if args.json:  # after every circuit: a long run keeps what it measured
            bench_dnn.write_json(args.json, {"settings": vars(args), "summary": summary, "runs": rows})
    print(table(summary))
    return summary


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    acc = result["accuracy"]
    kind = {label: label.split(" ")[0] for label in acc}
    pick = {k: next(acc[label] for label in acc if kind[label] == k) for k in ("digital", "ideal-quantized",
                                                                             "surrogate", "exact")}
    gap = next(iter(result["accuracy_gap_points"].values()))
    c = result["circuit"]
    return {"rows": c["rows"], "cols": c["cols"], "n_test": result["n_test"],
            "accuracy": {k: v for k, v in pick.items()}, "gap_points": gap,
            "exact_seconds": result["exact_bind"]["seconds"]}


def row_line(name: str, result: dict[str, Any]) -> str:
    s = summarize(result)
    a = s["accuracy"]
    return (f"{name}: ideal-quantized {100 * a['ideal-quantized']['bn_adapt']:.1f}%, exact {100 * a['exact']['bn_adapt']:.1f}%, "
            f"surrogate {100 * a['surrogate']['bn_adapt']:.1f}% after BN adaptation; gap {s['gap_points']}")


def table(summary: dict[str, dict[str, Any]]) -> str:
    lines = ["| circuit | tile | test images | ideal-quantized | exact | surrogate | gap (points) | within 1 point |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for name, s in summary.items():
        a = s["accuracy"]
        gap = s["gap_points"]["bn_adapt"]
        lines.append(f"| {name} | {s['rows']}x{s['cols']} | {s['n_test']} | {100 * a['ideal-quantized']['bn_adapt']:.1f}% "
                     f"| {100 * a['exact']['bn_adapt']:.1f}% | {100 * a['surrogate']['bn_adapt']:.1f}% | {gap:.1f} "
                     f"| {'yes' if gap <= bench_dnn.ACCURACY_GAP_TARGET_POINTS else 'no'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
