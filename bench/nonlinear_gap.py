"""DNN-level gap between each circuit's surrogate and its exact physics, for the non-linear operating points.

Usage (after building the surrogates and the model of the config, see ``config/nonlinear_gap.yaml``)::

    python bench/nonlinear_gap.py --config config/nonlinear_gap.yaml --json bench/nonlinear_gap.json

For every circuit of the config (or those named with ``--circuit``), ``bench/bench_dnn.py``'s accuracy
measurement (``--no-timing --bn-adapt-only``) of the config's model through the ideal-quantized crossbar, the circuit's
surrogate (``RESULTS/surrogate/NAME.h5``) and its exact physics (``dnn.evaluate.exact_tile_model``: the
batched Newton solve for sinh/1T1R cells) after BN adaptation, with the ADC
settings of ``--crossbar-json``. Prints one table; the gap |surrogate - exact| after BN adaptation is
judged against the 1-point target. Nothing is asserted.

Progress: before each circuit, one forward of a test image through an ideal crossbar counts the
tile-vectors that the exact mode will solve (BN adaptation and evaluation); ``spice.exact.PROGRESS`` then
shows a bar on a terminal and logs a line every ~20 s otherwise (stage, count, rate, time left).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_dnn  # noqa: E402

from dnn.config import CrossbarConfig  # noqa: E402
from dnn.convert import convert_to_crossbar  # noqa: E402
from dnn.datasets import load_dataset  # noqa: E402
from dnn.mvm import IdealTileMVM  # noqa: E402
from dnn.train import load_model  # noqa: E402
from spice.circuit import spec_from_config  # noqa: E402
from spice.exact import PROGRESS  # noqa: E402

log = logging.getLogger("nonlinear_gap")

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


@dataclass(frozen=True)
class CountingTileMVM(IdealTileMVM):
    """The ideal tile model that counts the tile-vectors of every call (for the time-left estimate)."""

    counted: list[int] = field(default_factory=lambda: [0])

    def bind(self, g_s: torch.Tensor):
        mvm = super().bind(g_s)

        def counting(v_v: torch.Tensor) -> torch.Tensor:
            self.counted[0] += v_v.shape[0] * v_v.shape[1]
            return mvm(v_v)

        return counting


def tile_vectors_per_image(model_path: Path, circuit: dict[str, Any], crossbar_json: str, seed: int) -> int:
    """Tile-vectors one test image sends through the crossbar layers (one forward, ideal tiles)."""
    spec = spec_from_config("count", circuit)
    model, meta = load_model(model_path)
    data = load_dataset(meta["dataset"]["name"], meta["dataset"].get("root"), meta["dataset"].get("seed", 0), n_test=1)
    counter = CountingTileMVM(spec.rows, spec.cols, spec.g_off_s, spec.g_on_s, spec.v_read_max_v)
    cfg = CrossbarConfig(seed=seed).replace(**json.loads(crossbar_json or "{}"))
    xm = convert_to_crossbar(model, cfg, counter).eval()
    with torch.no_grad():
        xm(data.test[0][0][None])
    return counter.counted[0]


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
        per_image = tile_vectors_per_image(results / "models" / f"{model_name}.pt", entry, args.crossbar_json, args.seed)
        images = args.calibration_samples + (args.n_test or 0)
        log.info("%s: the exact mode solves ~%d tile-vectors per image, ~%d for %d images (BN adaptation and "
                 "evaluation)", name, per_image, per_image * images, images)
        PROGRESS.expect(per_image * images if args.n_test else None, f"{name} exact mode")
        rows[name] = bench_dnn.run(bench_dnn.parse_args(argv), say=lambda text: None)
        PROGRESS.close()  # its last line: a log line, or the bar left on a terminal
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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run(parse_args(argv))


if __name__ == "__main__":
    main()
