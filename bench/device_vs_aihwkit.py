"""The device model side by side with aihwkit: the same weights programmed by aihwkit's PCMLikeNoiseModel and
by xbarchar's ``aihwkit_pcm`` preset.

Usage::

    make peers                                                    # once: .venv-peers with aihwkit 1.1.0
    python bench/device_vs_aihwkit.py --json bench/device_vs_aihwkit.json    # about a minute on one core
    python bench/device_vs_aihwkit.py --quick                     # small arrays (the test's run)

Run it from the repository root. One command, one run:

1. a seeded weight matrix W [out, in] (normal) and input vectors X are drawn here (project ``.venv``) and
   mapped to target conductances the way aihwkit's ``SinglePairConductanceConverter(g_max, g_min)`` maps
   them (G+ = g_min + max(w, 0) s, G- = g_min + max(-w, 0) s, s = (g_max - g_min) / max|W|), g_max = 25 uS
   and g_min = g_max / 40 (the preset's ON/OFF);
2. aihwkit programs and drifts them in its own environment (``.venv-peers``, a subprocess of this script,
   arrays exchanged as .npz): ``apply_programming_noise_to_conductance``, ``generate_drift_coefficients``
   (from the targets) and ``apply_drift_noise_to_conductance`` at t_inference, per device, as
   ``BaseNoiseModel.apply_noise`` calls them;
3. xbarchar programs the same targets with ``dnn/device.py`` and the ``aihwkit_pcm`` preset's keys
   (``program_conductances`` with its clip, ``aihwkit_pcm_nu`` or the linear nu fit, ``dnn.noise.apply_drift``
   at t = t_inference + t0 (aihwkit counts t_inference from t0, xbarchar from the end of programming), and
   the read noise sigma(g) of ``aihwkit_read_noise_sigma`` with ``read_noise_scale`` of the programmed
   (pre-drift) conductance, as ``dnn.layers`` reads it;
4. both are compared: the two-sample Kolmogorov-Smirnov distance of the programmed conductances and of the
   drifted ones at each time, and the MVM output error ||X W_hat^T - X W^T|| / ||X W^T|| (weights back
   from the pair as aihwkit's converter does), without and with aihwkit's global drift compensation
   (``GlobalDriftCompensation``: outputs times mean|W_prog| / mean|W_t|, its read-out of the one-hot
   vectors, the baseline read right after programming), applied the same way to both halves.

Variants of the xbarchar half show what each choice of the preset costs: the linear nu(g) fit instead of
aihwkit's clamped log law, the [g_off, g_on] clip instead of aihwkit's clip at 0, and the read-noise
sigma of the drifted rather than the programmed conductance.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("bench.device_vs_aihwkit")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_PEERS_PYTHON = REPO / ".venv-peers" / "bin" / "python"
G_MAX_US = 25.0
ON_OFF = 40.0
T_INFERENCE_S = {"1 s": 1.0, "1 h": 3600.0, "1 day": 86400.0, "1 year": 365.0 * 86400.0}
KS_TARGET = 0.02
ERROR_TARGET_REL = 0.05


# ===================================================================== shared (both environments)
def targets_us(w: np.ndarray, g_max: float, g_min: float) -> tuple[np.ndarray, np.ndarray, float]:
    """aihwkit's SinglePairConductanceConverter: (G+, G-) in uS and the scale ratio (uS per weight unit)."""
    s = (g_max - g_min) / max(float(np.abs(w).max()), 1e-7)
    sw = w * s
    return np.clip(sw, 0.0, g_max) + g_min, np.clip(-sw, 0.0, g_max) + g_min, s


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov distance sup |F_a - F_b| (point masses, e.g. clips at 0, counted)."""
    a, b = np.sort(a.ravel()), np.sort(b.ravel())
    x = np.concatenate([a, b])
    fa = np.searchsorted(a, x, side="right") / a.size
    fb = np.searchsorted(b, x, side="right") / b.size
    return float(np.abs(fa - fb).max())


# ===================================================================== aihwkit half (.venv-peers)
def worker(inp: Path, out: Path) -> None:
    """Program and drift the targets with aihwkit's PCMLikeNoiseModel (run in .venv-peers)."""
    import torch
    from aihwkit.inference.converter.conductance import SinglePairConductanceConverter
    from aihwkit.inference.noise.pcm import PCMLikeNoiseModel

    d = np.load(inp)
    g_min = float(d["g_min_us"])
    model = PCMLikeNoiseModel(g_converter=SinglePairConductanceConverter(g_max=G_MAX_US, g_min=g_min))
    res: dict[str, np.ndarray] = {}
    for r in range(int(d["repeats"])):
        torch.manual_seed(int(d["seed"]) + r)
        w = torch.from_numpy(d[f"w{r}"])
        (gp, gm), params = model.g_converter.convert_to_conductances(w)
        t0 = time.perf_counter()
        prog = [model.apply_programming_noise_to_conductance(g.clone()) for g in (gp, gm)]
        nus = [model.generate_drift_coefficients(g.clone()) for g in (gp, gm)]
        res[f"prog{r}"] = np.stack([g.numpy() for g in prog])
        res[f"target{r}"] = np.stack([gp.numpy(), gm.numpy()])
        for k, t in enumerate(d["t_inference_s"]):
            drifted = [model.apply_drift_noise_to_conductance(g, nu, float(t)) for g, nu in zip(prog, nus, strict=True)]
            res[f"drift{r}_{k}"] = np.stack([g.numpy() for g in drifted])
        res[f"wall{r}"] = np.array(time.perf_counter() - t0)
        res[f"scale{r}"] = np.array(float(params["scale_ratio"]))
    from importlib.metadata import version
    res["versions"] = np.array(f"aihwkit {version('aihwkit')}, torch {torch.__version__}")
    np.savez(out, **res)


# ===================================================================== xbarchar half (.venv)
def xbarchar_half(targets: np.ndarray, t_inference_s: list[float], seed: int, variant: dict[str, Any]
                  ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Program (and drift at each t) the targets [2, out, in] uS with dnn/device.py and the aihwkit_pcm preset."""
    import torch

    from dnn.config import CrossbarConfig, get_device_preset
    from dnn.device import aihwkit_pcm_nu, aihwkit_read_noise_sigma, program_conductances, read_noise_scale
    from dnn.noise import apply_drift, apply_read_noise, draw_drift_nu, make_generator

    preset = get_device_preset("aihwkit_pcm")
    cfg = CrossbarConfig.from_dict({**preset.device_config(), **variant.get("keys", {})})
    g_on, g_off = G_MAX_US * 1e-6, G_MAX_US * 1e-6 / ON_OFF
    g_t = torch.from_numpy(targets * 1e-6)
    coeffs = (cfg.prog_noise_c0_rel, cfg.prog_noise_c1_rel, cfg.prog_noise_c2_rel)
    g_p, _ = program_conductances(g_t, g_off, g_on, coeffs, make_generator(seed), clip=cfg.prog_noise_clip)
    x = g_t / g_on
    if cfg.drift_nu_law == "aihwkit_pcm":
        nu = aihwkit_pcm_nu(x, make_generator(seed + 1))
    else:
        mean = cfg.drift_nu_mean + cfg.drift_nu_slope * x
        nu = draw_drift_nu(x.shape, mean, cfg.drift_nu_std, make_generator(seed + 1), dtype=torch.float64)
    drifted = []
    for k, t in enumerate(t_inference_s):
        t_s = t + cfg.t0_s
        g_d = apply_drift(g_p, nu, t_s, cfg.t0_s)
        ref = g_d if variant.get("read_scale_of") == "drifted" else g_p
        scale = read_noise_scale(ref, g_on, cfg.read_noise_g_exponent)
        g_r = apply_read_noise(g_d, aihwkit_read_noise_sigma(t_s), make_generator(seed + 2 + k), scale)
        drifted.append((g_r.clamp_min(0.0) * 1e6).numpy())
    return (g_p * 1e6).numpy(), drifted


VARIANTS = {
    "aihwkit_pcm preset": {},
    "linear nu(g) fit": {"keys": {"drift_nu_law": "linear"}},
    "clip to [g_off, g_on]": {"keys": {"prog_noise_clip": "range"}},
    "read sigma of drifted g": {"read_scale_of": "drifted"},
}


# ===================================================================== comparison
def weights_back(g: np.ndarray, scale: float) -> np.ndarray:
    """aihwkit's convert_back_to_weights: (G+ - G-) / scale."""
    return (g[0] - g[1]) / scale


def output_errors(x: np.ndarray, w: np.ndarray, w_prog: np.ndarray, w_t: np.ndarray) -> tuple[float, float]:
    """Relative output error of x @ w_t.T against x @ w.T, without and with global drift compensation."""
    y = x @ w.T
    y_t = x @ w_t.T
    alpha = np.abs(w_prog).mean() / max(np.abs(w_t).mean(), 1e-12)  # GlobalDriftCompensation, eye read-out
    norm = np.linalg.norm(y)
    return float(np.linalg.norm(y_t - y) / norm), float(np.linalg.norm(alpha * y_t - y) / norm)


def run(quick: bool, peers_python: Path, seed: int = 0) -> dict[str, Any]:
    n_out, n_in, n_x, repeats = (32, 32, 64, 2) if quick else (256, 256, 512, 4)
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal((n_out, n_in)).astype(np.float64) for _ in range(repeats)]
    x = rng.standard_normal((n_x, n_in))
    g_min = G_MAX_US / ON_OFF
    times = list(T_INFERENCE_S.values())
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(inp, g_min_us=g_min, repeats=repeats, seed=seed, t_inference_s=np.array(times),
                 **{f"w{r}": w for r, w in enumerate(ws)})
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        t0 = time.perf_counter()
        proc = subprocess.run([str(peers_python), str(Path(__file__).resolve()), "--worker", str(inp), str(out)],
                              env=env, capture_output=True, text=True, cwd=REPO)
        if proc.returncode != 0:
            raise RuntimeError(f"aihwkit worker failed (rc {proc.returncode}): {proc.stderr.strip()[-2000:]}")
        aih = dict(np.load(out))
        aihwkit_wall = time.perf_counter() - t0
    result: dict[str, Any] = {"aihwkit_versions": str(aih["versions"]), "aihwkit_wall_s": aihwkit_wall}
    a_prog = np.concatenate([aih[f"prog{r}"].ravel() for r in range(repeats)])
    a_drift = [np.concatenate([aih[f"drift{r}_{k}"].ravel() for r in range(repeats)]) for k in range(len(times))]
    a_err = np.array([[output_errors(x, ws[r], weights_back(aih[f"prog{r}"], float(aih[f"scale{r}"])),
                                     weights_back(aih[f"drift{r}_{k}"], float(aih[f"scale{r}"])))
                       for k in range(len(times))] for r in range(repeats)])  # [repeats, times, 2]
    a_prog_err = float(np.mean([output_errors(x, ws[r], ws[r], weights_back(aih[f"prog{r}"],
                                                                             float(aih[f"scale{r}"])))[0]
                                for r in range(repeats)]))
    variants = {}
    for name, variant in VARIANTS.items():
        t0 = time.perf_counter()
        progs, drifts = [], [[] for _ in times]
        errs = []
        prog_errs = []
        for r in range(repeats):
            targets = np.stack(targets_us(ws[r], G_MAX_US, g_min)[:2])
            scale = targets_us(ws[r], G_MAX_US, g_min)[2]
            assert np.array_equal(targets, aih[f"target{r}"].astype(np.float64)) or np.allclose(
                targets, aih[f"target{r}"], rtol=1e-6), "target conductances differ from aihwkit's"
            g_p, g_ds = xbarchar_half(targets, times, 1000 * (seed + 1) + 17 * r, variant)
            progs.append(g_p.ravel())
            w_p = weights_back(g_p, scale)
            prog_errs.append(output_errors(x, ws[r], ws[r], w_p)[0])
            errs.append([output_errors(x, ws[r], w_p, weights_back(g_d, scale)) for g_d in g_ds])
            for k, g_d in enumerate(g_ds):
                drifts[k].append(g_d.ravel())
        errs_a = np.array(errs)
        rows = {"programmed": {"ks": ks_distance(np.concatenate(progs), a_prog),
                               "error_xbarchar": float(np.mean(prog_errs)), "error_aihwkit": a_prog_err}}
        for k, label in enumerate(T_INFERENCE_S):
            rows[label] = {
                "ks": ks_distance(np.concatenate(drifts[k]), a_drift[k]),
                "error_xbarchar": float(errs_a[:, k, 0].mean()), "error_aihwkit": float(a_err[:, k, 0].mean()),
                "error_xbarchar_compensated": float(errs_a[:, k, 1].mean()),
                "error_aihwkit_compensated": float(a_err[:, k, 1].mean()),
            }
        for row in rows.values():
            for suffix in ("", "_compensated"):
                if f"error_xbarchar{suffix}" in row:
                    row[f"error_ratio{suffix}"] = row[f"error_xbarchar{suffix}"] / row[f"error_aihwkit{suffix}"]
            row["ks_ok"] = row["ks"] <= KS_TARGET
            row["error_ok"] = all(abs(row[k] - 1.0) <= ERROR_TARGET_REL for k in row if k.startswith("error_ratio"))
        variants[name] = {"rows": rows, "wall_s": time.perf_counter() - t0, "settings": variant}
        log.info("%s: %s", name, {k: round(v["ks"], 4) for k, v in rows.items()})
    result.update({
        "variants": variants,
        "setup": {"weights": [n_out, n_in], "vectors": n_x, "repeats": repeats, "devices_per_side": 2 * n_out * n_in
                  * repeats, "g_max_us": G_MAX_US, "g_min_us": g_min, "t_inference_s": T_INFERENCE_S,
                  "t0_s": 20.0, "seed": seed, "ks_target": KS_TARGET, "error_target_rel": ERROR_TARGET_REL,
                  "ks_noise_95": 1.358 * float(np.sqrt(2.0 / (2 * n_out * n_in * repeats)))},
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    })
    return result


def table(result: dict[str, Any]) -> str:
    """The markdown table of the preset's rows."""
    rows = result["variants"]["aihwkit_pcm preset"]["rows"]
    out = ["| state | KS | output error xbarchar | aihwkit | ratio | compensated xbarchar | aihwkit | ratio |",
           "|---|---|---|---|---|---|---|---|"]
    for label, r in rows.items():
        comp = (f"{r['error_xbarchar_compensated']:.4f} | {r['error_aihwkit_compensated']:.4f} | "
                f"{r['error_ratio_compensated']:.3f}") if "error_ratio_compensated" in r else "- | - | -"
        out.append(f"| {label} | {r['ks']:.4f} | {r['error_xbarchar']:.4f} | {r['error_aihwkit']:.4f} | "
                   f"{r['error_ratio']:.3f} | {comp} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, help="write the result here")
    p.add_argument("--quick", action="store_true", help="small arrays, two repeats")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--peers-python", type=Path, default=DEFAULT_PEERS_PYTHON)
    p.add_argument("--worker", nargs=2, type=Path, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if ns.worker:
        worker(*ns.worker)
        return 0
    if not ns.peers_python.exists():
        print(f"device_vs_aihwkit: {ns.peers_python} not found: run `make peers` first", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    result = run(ns.quick, ns.peers_python, ns.seed)
    result["command"] = "python bench/device_vs_aihwkit.py" + (" --quick" if ns.quick else "") + (
        f" --json {ns.json}" if ns.json else "")
    print(table(result))
    if ns.json:
        ns.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
