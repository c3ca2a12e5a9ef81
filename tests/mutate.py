"""Mutation testing of the hot paths (``make mutate``): mutmut, one module at a time.

Each module is mutated against only the test files that exercise it, in its own scratch copy of the
repository (``.mutmut/<module>/``, git-ignored), so a module's run never waits on unrelated tests and
results of one module survive a rerun of another. Mutants listed in ``tests/mutation_equivalent.json``
(name -> reason) behave exactly like the original and are left out of the score::

    python tests/mutate.py                       # every module below, one after another
    python tests/mutate.py dnn/mapping.py        # one module
    python tests/mutate.py --report              # scores of the runs already made, no new run

The score of a module is killed / (mutants - equivalent); a timeout counts as killed (the mutant made
the tests hang). Exit status 1 when a module is below ``--target`` (0.85) or a surviving mutant is
neither killed nor listed as equivalent.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / ".mutmut"
EQUIVALENT = REPO / "tests" / "mutation_equivalent.json"

# module -> the test files that exercise it (each module's mutants run only these)
MODULES: dict[str, list[str]] = {
    "spice/simulate.py": ["tests/test_spice_simulate.py"],
    "spice/nodal.py": ["tests/test_spice_vs_nodal.py", "tests/test_spice_simulate.py", "tests/test_spice_netlist.py"],
    "spice/netlist.py": ["tests/test_spice_vs_nodal.py", "tests/test_spice_circuits.py",
                         "tests/test_spice_netlist.py"],
    "spice/exact.py": ["tests/test_exact_nonlinear.py", "tests/test_read_noise_loaded.py"],
    "dnn/noise.py": ["tests/test_read_noise_loaded.py", "tests/test_dnn_layers.py"],
    "dnn/mapping.py": ["tests/test_dnn_mapping.py"],
    "dnn/layers.py": ["tests/test_dnn_layers.py"],
    "dnn/mitigation.py": ["tests/test_dnn_mitigation.py"],
    "surrogate/transfer.py": ["tests/test_surrogate_mvm.py", "tests/test_surrogate_physics.py",
                              "tests/test_surrogate_transfer.py"],
    "dnn/report.py": ["tests/test_dnn_report.py"],
    "surrogate/ridge.py": ["tests/test_surrogate_ridge.py", "tests/test_surrogate_auto.py"],
    "surrogate/cell_iv.py": ["tests/test_surrogate_cell_iv.py"],  # (auto's tests train all five circuits: minutes a mutant)
}
KILLED = {"killed", "timeout", "segfault", "caught by type check"}


def _copy_repo(dest: Path) -> None:
    """Tracked and untracked-but-not-ignored files of the working tree (no results, no .venv)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    if dest.exists():
        shutil.rmtree(dest)
    for name in filter(None, files):
        src = REPO / name
        if src.is_symlink():  # spice/circuits, spice/schema.yaml: links into data/ and config/
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).symlink_to(os.readlink(src))
        elif src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def _configure(dest: Path, module: str, tests: list[str]) -> None:
    text = (dest / "pyproject.toml").read_text()
    section = "\n".join([
        "", "[tool.mutmut]",
        'source_paths = ["spice", "surrogate", "dnn"]',  # all packages in mutants/: imports never leave it
        f"only_mutate = [{json.dumps(module)}]",
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}",
        'pytest_add_cli_args = ["-q", "-p", "no:cacheprovider", "-m", "not e2e"]',
        'also_copy = ["data", "config", "bench", "Snakefile", "rules", "profiles", "report", "scripts"]',
        "timeout_multiplier = 5.0",
        "timeout_constant = 20.0",
        "",
    ])
    (dest / "pyproject.toml").write_text(text + section)


def run_module(module: str, max_children: int) -> float:
    dest = WORK / module.replace("/", ".")
    _copy_repo(dest)
    _configure(dest, module, MODULES[module])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    mutmut = Path(sys.executable).with_name("mutmut")
    t0 = time.monotonic()
    subprocess.run([str(mutmut), "run", "--max-children", str(max_children)], cwd=dest, env=env, check=False)
    return time.monotonic() - t0


def module_results(module: str) -> dict[str, str] | None:
    """mutant name -> status of the last run of `module` (None: never run)."""
    from mutmut.stats import status_by_exit_code

    meta = WORK / module.replace("/", ".") / "mutants" / (module + ".meta")
    if not meta.exists():
        return None
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return {name: status_by_exit_code[code] for name, code in codes.items()}


def report(modules: list[str], target: float, timings: dict[str, float], show: bool = False) -> int:
    equivalent: dict[str, str] = json.loads(EQUIVALENT.read_text()) if EQUIVALENT.exists() else {}
    ok = True
    print("| module | mutants | killed | equivalent | survived | score | run time (s) |")
    print("|---|---|---|---|---|---|---|")
    for module in modules:
        results = module_results(module)
        if results is None:
            print(f"| {module} | not run | | | | | |")
            continue
        eq = {k for k in results if k in equivalent}
        killed = {k for k, s in results.items() if s in KILLED and k not in eq}
        open_ = sorted(k for k in results if k not in eq and k not in killed)
        score = len(killed) / max(len(results) - len(eq), 1)
        t = f"{timings[module]:.0f}" if module in timings else ""
        print(f"| {module} | {len(results)} | {len(killed)} | {len(eq)} | {len(open_)} | {100 * score:.1f}% | {t} |")
        for k in open_:
            print(f"    {results[k]}: {k}", file=sys.stderr)
            if show:
                mutmut = Path(sys.executable).with_name("mutmut")
                diff = subprocess.run([str(mutmut), "show", k], cwd=WORK / module.replace("/", "."),
                                      capture_output=True, text=True).stdout
                print("\n".join("        " + line for line in diff.splitlines() if line[:1] in "+-@"),
                      file=sys.stderr)
        ok = ok and score >= target
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("modules", nargs="*", help=f"default: {' '.join(MODULES)}")
    p.add_argument("--report", action="store_true", help="only print the scores of earlier runs")
    p.add_argument("--max-children", type=int, default=os.cpu_count() or 1)
    p.add_argument("--show", action="store_true", help="print the diff of every open mutant")
    p.add_argument("--target", type=float, default=0.85)
    ns = p.parse_args(argv)
    modules = ns.modules or list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        p.error(f"unknown module(s) {unknown}; expected some of {list(MODULES)}")
    timings: dict[str, float] = {}
    if not ns.report:
        for module in modules:
            timings[module] = run_module(module, ns.max_children)
            print(f"{module}: {timings[module]:.0f} s", flush=True)
    return report(modules, ns.target, timings, ns.show)


if __name__ == "__main__":
    sys.exit(main())
