"""Energy in the DNN loop: what metering costs, and accuracy against energy across array sizes.

Usage::

    python bench/energy_dnn.py --config config/energy.yaml --json bench/energy_dnn.json \\
        --plot docs/energy_accuracy.png --threads 1

Two parts, one run:

- **speed**: the crossbar forward of the config's model on test images, without and with the energy
  meter attached (``dnn.energy.metering``), per tile model (ideal, exact linear physics, and the circuit's
  surrogate where ``--surrogate-dir`` holds one: the default run's tile model) and array size; median of interleaved rounds, so both see the same machine load. The ratio with / without is
  what computing energy adds to the forward.
- **sweep**: ``python -m dnn evaluate``'s engine (``dnn.evaluate.evaluate_methods``) on every circuit of the
  config with the *exact linear tile model* (``dnn.evaluate.exact_tile_model``: the nodal transfer matrix
  and, for the read power, the input admittance; no SPICE dataset and no surrogate), the config's crossbar,
  scenario and evaluation settings (its ``evaluation.energy`` included); results as evaluation JSONs under
  ``--out-dir``, then the accuracy-energy figure and statement (``dnn.report_energy``, the config's
  ``report.energy_loss_points``).

The model is the config's first one, read from ``<results_dir>/models/<name>.pt`` (``snakemake
results/models/digits_bncnn.pt`` trains it). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_dnn  # noqa: E402

from dnn.config import CrossbarConfig  # noqa: E402
from dnn.convert import convert_to_crossbar  # noqa: E402
from dnn.datasets import load_dataset  # noqa: E402
from dnn.energy import EnergyMeter, first_images, metering  # noqa: E402
from dnn.evaluate import evaluate_methods, exact_tile_model, ideal_tile_model, surrogate_tile_model  # noqa: E402
from dnn.report import ReportSettings  # noqa: E402
from dnn.report_energy import write_energy_report  # noqa: E402
from dnn.results import EvaluationResult  # noqa: E402
from dnn.settings import EvaluationSettings  # noqa: E402
from dnn.train import load_model, make_loader  # noqa: E402
from pipeline.config import crossbar_settings  # noqa: E402
from spice.circuit import spec_from_config  # noqa: E402
from xbarchar.settings import from_dict, to_dict  # noqa: E402

logger = logging.getLogger("bench.energy_dnn")


def _load(config: dict[str, Any]) -> tuple[str, torch.nn.Module, dict[str, Any], Any]:
    name = next(iter(config["models"]))
    model, meta = load_model(str(Path(config.get("results_dir", "results")) / "models" / f"{name}.pt"))
    ds = dict(meta["dataset"])
    data = load_dataset(ds["name"], ds.get("root"), ds.get("seed", 0), n_train=ds.get("n_train"),
                        n_test=ds.get("n_test"))
    return name, model.eval(), meta, data


def speed(config: dict[str, Any], n_images: int, rounds: int, surrogate_dir: Path | None = None
          ) -> list[dict[str, Any]]:
    """Forward time without and with the energy meter, per circuit and tile model (median of interleaved rounds):
    ideal, exact, and the circuit's surrogate ``<surrogate_dir>/<circuit>.h5`` where that file exists."""
    _, model, _, data = _load(config)
    settings = from_dict(EvaluationSettings, config.get("evaluation"), "evaluation").energy
    scenario = next(iter(config["scenarios"]))
    cfg = CrossbarConfig.from_dict(crossbar_settings(config, scenario))
    x = first_images(make_loader(data.test, 256), n_images)
    out = []
    for circuit, entry in config["circuits"].items():
        spec = spec_from_config(circuit, entry)
        models = {"ideal": ideal_tile_model(spec.rows, spec.cols, spec.g_off_s, spec.g_on_s, spec.v_read_max_v)[0],
                  "exact": exact_tile_model(spec)[0]}
        path = None if surrogate_dir is None else surrogate_dir / f"{circuit}.h5"
        if path is not None and path.is_file():
            models["surrogate"] = surrogate_tile_model(path, spec)[0]
        for kind, mvm in models.items():
            xbar = convert_to_crossbar(model, cfg, mvm).eval()
            meter = EnergyMeter(settings.periphery(), settings.power_sample_vectors)
            with torch.no_grad():
                xbar(x)  # programming, binding (transfer matrix) and the power's binding outside the timing
                with metering(xbar, meter):
                    xbar(x)
                plain, metered = [], []  # process CPU time (one thread): less sensitive to a loaded machine
                for _ in range(rounds):
                    t0 = time.process_time()
                    xbar(x)
                    plain.append(time.process_time() - t0)
                    with metering(xbar, meter):
                        t0 = time.process_time()
                        xbar(x)
                        metered.append(time.process_time() - t0)
            row = {"circuit": circuit, "rows": spec.rows, "tile_model": kind,
                   **({"surrogate": str(path)} if kind == "surrogate" else {}), "n_images": n_images, "rounds": rounds,
                   "clock": "process CPU time, median of interleaved rounds",
                   "forward_s": statistics.median(plain), "forward_metered_s": statistics.median(metered),
                   "power_sample_vectors": settings.power_sample_vectors, "power_model": meter.summary(1)["power_model"]}
            row["ratio"] = row["forward_metered_s"] / row["forward_s"]
            logger.info("%s %s: forward %.4f s, with energy %.4f s, ratio %.3f", circuit, kind, row["forward_s"],
                        row["forward_metered_s"], row["ratio"])
            out.append(row)
    return out


def sweep(config: dict[str, Any], out_dir: Path, device: torch.device) -> list[Path]:
    """The config's evaluation on every circuit with exact linear physics; one evaluation JSON per circuit
    and scenario."""
    name, model, meta, data = _load(config)
    settings = from_dict(EvaluationSettings, config.get("evaluation"), "evaluation")
    paths = []
    for scenario in config["scenarios"]:
        cfg = CrossbarConfig.from_dict(crossbar_settings(config, scenario))
        for circuit, entry in config["circuits"].items():
            spec = spec_from_config(circuit, entry)
            mvm, info = exact_tile_model(spec)
            t0 = time.perf_counter()
            software, methods = evaluate_methods(model, data, mvm, cfg, settings, device, progress=False,
                                                 scenario=scenario)
            path = out_dir / circuit / name / f"{scenario}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            EvaluationResult(circuit=circuit, model=name, scenario=scenario, architecture=meta["model_name"],
                             model_path="", software_accuracy=software, methods=methods,
                             circuit_spec={**spec.tile.to_dict(), "netlist_path": spec.netlist_path},
                             dataset=dict(meta["dataset"]), mvm=info, xbar_config=cfg.to_dict(),
                             evaluation=to_dict(settings), device=str(device)).write(path)
            logger.info("%s %s: %s in %.0f s", circuit, scenario,
                        {m: f"{100 * r.accuracy_mean:.1f}% {r.energy.get('energy_per_inference_j', float('nan')):.3g} J"
                         for m, r in methods.items()}, time.perf_counter() - t0)
            paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="config/energy.yaml")
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None, help="accuracy-energy figure (.png)")
    p.add_argument("--out-dir", default="results/energy_bench", help="evaluation JSONs of the sweep")
    p.add_argument("--part", choices=["speed", "sweep", "all"], default="all")
    p.add_argument("--speed-images", type=int, default=64)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--surrogate-dir", default=None,
                   help="speed: also time the surrogate tile model <dir>/<circuit>.h5 where it exists "
                        "(default <results_dir>/surrogate)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    config = yaml.safe_load(Path(args.config).read_text())
    env = bench_dnn.environment(args.threads)
    result: dict[str, Any] = {"command": " ".join(["python bench/energy_dnn.py", *(argv or sys.argv[1:])]),
                              "config": args.config, "environment": env}
    if args.part in ("speed", "all"):
        surrogate_dir = Path(args.surrogate_dir or Path(config.get("results_dir", "results")) / "surrogate")
        result["speed"] = speed(config, args.speed_images, args.rounds, surrogate_dir)
        result["speed_ratio_max"] = max(r["ratio"] for r in result["speed"])
    if args.part in ("sweep", "all"):
        t0 = time.perf_counter()
        paths = sweep(config, Path(args.out_dir), torch.device("cpu"))
        loss = from_dict(ReportSettings, config.get("report"), "report").energy_loss_points
        result["sweep"] = {"tile_model": "exact linear (spice.nodal transfer matrix; read power v^T Y v)",
                           "wall_s": time.perf_counter() - t0, "loss_points": loss,
                           "statements": write_energy_report(paths, args.plot, None, loss),
                           "results": [_digest(EvaluationResult.read(path)) for path in paths]}
    env["load_avg_1min_end"] = bench_dnn.environment(args.threads)["load_avg_1min_start"]
    if args.json:
        bench_dnn.write_json(args.json, result)


def _digest(r: EvaluationResult) -> dict[str, Any]:
    """What the docs quote of one evaluation: accuracy, energy, latency and the breakdown per method."""
    return {"circuit": r.circuit, "rows": r.mvm.get("rows"), "scenario": r.scenario, "software": r.software_accuracy,
            "methods": {m: {"accuracy_mean": v.accuracy_mean, "accuracy_std": v.accuracy_std,
                            **{k: copy.deepcopy(v.energy.get(k)) for k in
                               ("energy_per_inference_j", "latency_per_inference_s", "energy_breakdown_j",
                                "array_ideal_formula_j", "power_model")},
                            "per_layer": [{k: layer[k] for k in ("name", "tiles", "reads_per_inference",
                                                                 "adc_conversions_per_inference",
                                                                 "dac_conversions_per_inference", "energy_j",
                                                                 "latency_s")}
                                          for layer in v.energy.get("per_layer", [])]}
                        for m, v in r.methods.items()}}


if __name__ == "__main__":
    main()
