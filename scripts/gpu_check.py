"""GPU check (`make gpu-check`): the CUDA paths of xbarchar, run on a GPU, with figures in one JSON.

1. the CUDA-marked tests (`pytest -m gpu`);
2. a small SPICE dataset and surrogate of the Paper-1 64x64 circuit (CPU: ngspice and training);
3. `bench/bench_dnn.py` on CUDA and on CPU: images/s of every mode (digital, ideal-quantized, surrogate,
   exact, read noise) and the CUDA/CPU ratio;
4. one VGG-8 on the MNIST subset, trained on the GPU, evaluated through the surrogate on CUDA and on
   CPU (no mitigation and BN adaptation, several seeds): accuracy on both devices must agree within
   seed noise (|mean difference| <= 2 standard deviations of the seeds, and at least 1 point allowed).

Without CUDA it stops at once with one error line and writes nothing (exit 2). `--cpu-only` runs the
same steps on CPU alone (to check the script itself on a machine without a GPU). Exit 0 when every
step passed, 1 when one failed (the JSON says which).

    python scripts/gpu_check.py [--json results/gpu_check.json] [--quick] [--cpu-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
CIRCUIT = {"preset": "paper1_64_w5"}
SAMPLING = {"sampler": "mixed", "mix_fraction": 0.5, "n_conductance": 8, "n_vectors": 256, "seed": 11}
SEEDS = [0, 1, 2]
FULL = {"epochs": 3, "width": 0.5, "n_train": None, "n_test": None, "surrogate_epochs": 100,
        "calibration_samples": 512, "bench": []}
QUICK = {"epochs": 1, "width": 0.125, "n_train": 500, "n_test": 200, "surrogate_epochs": 20,
         "calibration_samples": 128, "bench": ["--quick"]}
"""--quick: a smoke run of every step (tiny VGG-8, 500 training images); not the figures to quote."""


def run(cmd: list[str], log: Path) -> tuple[int, float]:
    """Run a command with its output in `log`; (exit status, wall seconds)."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT).returncode
    return rc, time.perf_counter() - t0


def gpu_tests(work: Path) -> dict[str, Any]:
    xml = work / "gpu_tests.xml"
    rc, wall = run([PY, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}"],
                   work / "gpu_tests.log")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if xml.is_file():
        suite = ET.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        counts = {k: int(suite.get(k, 0)) for k in counts}
    return {"exit_status": rc, "wall_s": wall, **counts,
            "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
            "ok": rc == 0 and counts["failures"] == 0 and counts["errors"] == 0}


def surrogate_file(work: Path, size: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    data, surrogate = work / "paper1_64.spice.h5", work / "paper1_64.surrogate.h5"
    rc1, t1 = run([PY, "-m", "spice", "simulate", "--circuit-name", "paper1_64", "--circuit", json.dumps(CIRCUIT),
                   "--sampling", json.dumps(SAMPLING), "--out", str(data), "--quiet"], work / "spice.log")
    rc2, t2 = (1, 0.0) if rc1 else run(
        [PY, "-m", "surrogate", "train", "--threads", "1", "--data", str(data), "--out", str(surrogate),
         "--params-json", json.dumps({"design": "transfer", "epochs": size["surrogate_epochs"], "seed": 12}),
         "--quiet"], work / "surrogate.log")
    return surrogate, {"spice_s": t1, "surrogate_train_s": t2, "ok": rc1 == 0 and rc2 == 0}


def bench_dnn(work: Path, device: str, surrogate: Path, size: dict[str, Any]) -> dict[str, Any]:
    out = work / f"bench_dnn_{device}.json"
    rc, wall = run([PY, "bench/bench_dnn.py", "--device", device, "--surrogate", str(surrogate), "--no-progress",
                    "--json", str(out), *size["bench"]], work / f"bench_dnn_{device}.log")
    if rc or not out.is_file():
        return {"ok": False, "exit_status": rc, "wall_s": wall}
    figures = json.loads(out.read_text())
    return {"ok": True, "wall_s": wall,
            "images_per_s": {mode: r["images_per_s"] for mode, r in figures["throughput"].items()},
            "accuracy": figures["accuracy"]}


def vgg_evaluation(work: Path, devices: list[str], surrogate: Path, size: dict[str, Any]) -> dict[str, Any]:
    model = work / "mnist_vgg8.pt"
    params = {"dataset": "mnist_subset", "model": "vgg8", "epochs": size["epochs"], "width": size["width"],
              "batch_size": 64, "lr": 0.001, "seed": 21, "n_train": size["n_train"], "n_test": size["n_test"]}
    rc, train_s = run([PY, "-m", "dnn", "train", "--params-json", json.dumps(params), "--device", devices[0],
                       "--threads", "0", "--no-progress", "--out", str(model)], work / "vgg_train.log")
    result: dict[str, Any] = {"model": params, "train_device": devices[0], "train_s": train_s, "ok": rc == 0}
    if rc:
        return result
    evaluation = {"methods": ["none", "bn_adapt"], "seeds": SEEDS, "calibration_samples": size["calibration_samples"]}
    for device in devices:
        out = work / f"vgg_eval_{device}.json"
        rc, wall = run([PY, "-m", "dnn", "evaluate", "--model", str(model), "--surrogate", str(surrogate),
                        "--circuit-name", "paper1_64", "--circuit", json.dumps(CIRCUIT), "--device", device,
                        "--evaluation-json", json.dumps(evaluation), "--threads", "0", "--no-progress", "--out", str(out)],
                       work / f"vgg_eval_{device}.log")
        if rc or not out.is_file():
            result.update(ok=False)
            result[device] = {"exit_status": rc, "wall_s": wall}
            continue
        ev = json.loads(out.read_text())
        result[device] = {"wall_s": wall, "device": ev["device"], "software_accuracy": ev["software_accuracy"],
                          "methods": {m: {k: r[k] for k in ("accuracy_mean", "accuracy_std", "accuracy_per_seed",
                                                              "wall_s")} for m, r in ev["methods"].items()}}
    if result["ok"] and len(devices) == 2:
        agree = {}
        for method in evaluation["methods"]:
            a, b = (result[d]["methods"][method] for d in devices)
            noise = max(2 * statistics.fmean([a["accuracy_std"], b["accuracy_std"]]), 0.01)
            agree[method] = {"difference": a["accuracy_mean"] - b["accuracy_mean"], "allowed": noise,
                             "ok": abs(a["accuracy_mean"] - b["accuracy_mean"]) <= noise}
        result["cuda_vs_cpu_accuracy"] = agree
        result["ok"] = all(v["ok"] for v in agree.values())
    return result


def environment() -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    return {"torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda_available": cuda,
            "gpu": torch.cuda.get_device_name(0) if cuda else None, "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "host": platform.node()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default="results/gpu_check.json", help="figures (written at the end, atomically)")
    parser.add_argument("--work", default="results/gpu_check", help="folder for the intermediate files and logs")
    parser.add_argument("--quick", action="store_true", help="a smoke run of every step (small sizes)")
    parser.add_argument("--cpu-only", action="store_true", help="run every step on CPU only (no GPU needed)")
    args = parser.parse_args(argv)
    env = environment()
    if not env["cuda_available"] and not args.cpu_only:
        print(f"error: no CUDA device (torch {env['torch']}, CUDA build: {env['torch_cuda'] or 'none'}): the GPU "
              "check needs a GPU; `--cpu-only` runs its steps on CPU", file=sys.stderr)
        return 2
    devices = ["cpu"] if args.cpu_only else ["cuda", "cpu"]
    size = QUICK if args.quick else FULL
    work = (REPO / args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {"environment": env, "devices": devices, "quick": args.quick}
    print("1/4 CUDA-marked tests", file=sys.stderr)
    figures["gpu_tests"] = gpu_tests(work)
    print("2/4 SPICE dataset and surrogate (Paper-1 64x64)", file=sys.stderr)
    surrogate, figures["surrogate"] = surrogate_file(work, size)
    if figures["surrogate"]["ok"]:
        print("3/4 bench/bench_dnn.py on " + " and ".join(devices), file=sys.stderr)
        figures["bench_dnn"] = {d: bench_dnn(work, d, surrogate, size) for d in devices}
        if all(figures["bench_dnn"][d]["ok"] for d in devices) and len(devices) == 2:
            cuda, cpu = (figures["bench_dnn"][d]["images_per_s"] for d in devices)
            figures["bench_dnn"]["cuda_x_cpu_images_per_s"] = {m: cuda[m] / cpu[m] for m in cuda}
        print("4/4 VGG-8 on the MNIST subset through the surrogate", file=sys.stderr)
        figures["vgg_mnist"] = vgg_evaluation(work, devices, surrogate, size)
    steps = ["gpu_tests", "surrogate", "vgg_mnist"]
    ok = all(figures.get(s, {}).get("ok", False) for s in steps) and all(
        figures.get("bench_dnn", {}).get(d, {}).get("ok", False) for d in devices)
    figures["ok"] = ok
    out = REPO / args.json
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(figures, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"{'OK' if ok else 'FAILED'}: figures in {out} (logs in {work})", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
