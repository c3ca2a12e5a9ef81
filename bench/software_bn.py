"""Software accuracy of a config's models with their training BN statistics and with BN re-estimated.

Usage::

    python bench/software_bn.py --config config/circuits.yaml

A model's BN running statistics are averages over the last training steps, taken while the weights
still moved. BN adaptation of a crossbar re-estimates them on clean calibration images, which can lift
a crossbar above the software model it came from. This bench applies the same re-estimation
(``dnn.mitigation.bn_adapt`` on the evaluation's calibration images, first seed) to the software model
itself, so that a crossbar after BN adaptation can be read against software at its best. Nothing is
asserted.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_dnn  # noqa: E402

from dnn import evaluate as dnn_evaluate  # noqa: E402
from dnn.datasets import load_dataset  # noqa: E402
from dnn.mitigation import bn_adapt  # noqa: E402
from dnn.train import evaluate, load_model, make_loader  # noqa: E402

BATCH_SIZE = 64
"""The calibration batch size of ``python -m dnn evaluate`` (its --batch-size default)."""


def software_bn(config_path: str) -> dict[str, Any]:
    """Per model of the config: test accuracy with training BN statistics and with re-estimated ones."""
    config = yaml.safe_load(Path(config_path).read_text())
    results = Path(config.get("results_dir", "results"))
    evaluation = config.get("evaluation", {})
    n_calibration = evaluation.get("calibration_samples", 1000)
    seed = int(evaluation.get("seeds", [0])[0])
    out = {}
    for name in config["models"]:
        model, meta = load_model(str(results / "models" / f"{name}.pt"))
        ds = dict(meta["dataset"])
        data = load_dataset(ds["name"], ds.get("root"), ds.get("seed", 0), n_train=ds.get("n_train"),
                            n_test=ds.get("n_test"))
        test = make_loader(data.test, 256)
        adapted = bn_adapt(copy.deepcopy(model),
                           dnn_evaluate.calibration_loader(data, n_calibration, BATCH_SIZE, seed))
        out[name] = {"n_test": len(data.test), "calibration_samples": n_calibration, "seed": seed,
                     "software": evaluate(model, test, torch.device("cpu")),
                     "software_bn_reestimated": evaluate(adapted, test, torch.device("cpu"))}
        print(f"{name}: software {100 * out[name]['software']:.1f}%, with BN re-estimated on "
              f"{n_calibration} images {100 * out[name]['software_bn_reestimated']:.1f}%", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="workflow config whose trained models are measured")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {"settings": vars(args), "models": software_bn(args.config)}
    if args.json:
        bench_dnn.write_json(args.json, result)


if __name__ == "__main__":
    main()
