"""Error paths of the stage command lines: every bad input ends the command with a non-zero status and a
message that names the file, flag or key at fault, and writes no output."""

from __future__ import annotations

import json

import pytest

from spice.cli import main as spice_main
from tests.conftest import CIRCUITS


def _fails(main, args, capsys):
    """Run a CLI in-process; returns (exit status, everything it said about the error)."""
    try:
        rc = main(args)
        message = ""
    except SystemExit as exc:  # argparse, or a command that exits with its message
        rc = exc.code if isinstance(exc.code, int) else 1
        message = "" if isinstance(exc.code, int) or exc.code is None else str(exc.code)
    captured = capsys.readouterr()
    assert rc not in (0, None), f"{args} succeeded"
    return rc, message + captured.err + captured.out


CIRCUIT = {"netlist": str(CIRCUITS / "resistive.cir"), "rows": 3, "cols": 2}


def _shard(tmp_path, name, shard=0, **sampling):
    out = tmp_path / f"{name}.h5"
    assert spice_main(["simulate", "--circuit-name", "c", "--circuit", json.dumps(CIRCUIT), "--sampling",
                       json.dumps({"n_conductance": 2, "n_vectors": 2, "n_shards": 2, **sampling}),
                       "--shard", str(shard), "--out", str(out), "--quiet"]) == 0
    return out


@pytest.mark.spice
def test_spice_merge_refuses_shards_that_do_not_belong_together(tmp_path, capsys):
    a = _shard(tmp_path, "a", seed=1)
    b = _shard(tmp_path, "b", seed=2, shard=1)
    out = tmp_path / "merged.h5"
    rc, msg = _fails(spice_main, ["merge", str(a), str(b), "--out", str(out)], capsys)
    assert "b.h5" in msg and ("seed" in msg or "sampling" in msg)
    other = tmp_path / "o"
    other.mkdir()
    c = _shard(other, "a", seed=1, shard=1)
    CIRCUIT["r_driver_ohm"] = 10.0
    try:
        d = _shard(other, "d", seed=1, shard=1)
    finally:
        del CIRCUIT["r_driver_ohm"]
    rc, msg = _fails(spice_main, ["merge", str(c), str(d), "--out", str(out)], capsys)
    assert "d.h5" in msg and "circuit" in msg
    rc, msg = _fails(spice_main, ["merge", str(a), str(tmp_path / "nowhere.h5"), "--out", str(out)], capsys)
    assert "nowhere.h5" in msg and "does not exist" in msg
    assert not out.exists() and not list(tmp_path.glob(".merged*"))


@pytest.mark.spice
def test_spice_inspect_and_check_errors(tmp_path, capsys):
    rc, msg = _fails(spice_main, ["inspect", str(tmp_path / "none.h5")], capsys)
    assert "none.h5" in msg and "does not exist" in msg
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    rc, msg = _fails(spice_main, ["inspect", str(junk)], capsys)
    assert "junk.h5" in msg and "not a readable HDF5 file" in msg
    rc, msg = _fails(spice_main, ["check", "--circuit", '{"preset": "paper1_64_w5",'], capsys)
    assert "--circuit" in msg and "not a JSON object" in msg
    rc, msg = _fails(spice_main, ["check", "--circuit", "[1, 2]"], capsys)
    assert "--circuit" in msg and "expected a JSON object" in msg
    rc, msg = _fails(spice_main, ["check", "--preset", "paper9"], capsys)
    assert "unknown preset 'paper9'" in msg and "paper1_64_w5" in msg
    no_cell = tmp_path / "no_cell.cir"
    no_cell.write_text(".subckt driver in out params: r=1\nR1 in out {r}\n.ends driver\n")
    rc, msg = _fails(spice_main, ["check", "--circuit", json.dumps({"netlist": str(no_cell), "rows": 2,
                                                                    "cols": 2})], capsys)
    assert "no_cell.cir" in msg and "cell" in msg
    rc, msg = _fails(spice_main, ["check", "--circuit", json.dumps({**CIRCUIT, "rows": 0})], capsys)
    assert "rows" in msg
    assert spice_main(["check", "--circuit-name", "ok", "--circuit", json.dumps(CIRCUIT)]) == 0
    assert "circuit 'ok' OK: 3x2" in capsys.readouterr().out


@pytest.mark.spice
def test_spice_simulate_rejects_malformed_sampling(tmp_path, capsys):
    out = tmp_path / "s.h5"
    rc, msg = _fails(spice_main, ["simulate", "--circuit", json.dumps(CIRCUIT), "--sampling", "{n_vectors: 2}",
                                  "--out", str(out)], capsys)
    assert "--sampling" in msg and "not a JSON object" in msg
    rc, msg = _fails(spice_main, ["simulate", "--circuit", json.dumps(CIRCUIT), "--sampling",
                                  '{"n_vector": 2}', "--out", str(out)], capsys)
    assert "n_vector" in msg
    assert not out.exists()


def test_dnn_train_argument_errors(tmp_path, capsys):
    from dnn.cli import main as dnn_main

    out = tmp_path / "m.pt"
    rc, msg = _fails(dnn_main, ["train", "--model", "bn_cnn", "--out", str(out)], capsys)
    assert "--dataset" in msg and "required" in msg
    rc, msg = _fails(dnn_main, ["train", "--params-json", '{"dataset": "digits", "model": ', "--out", str(out)],
                     capsys)
    assert "--params-json" in msg
    rc, msg = _fails(dnn_main, ["train", "--params-json", '["digits"]', "--out", str(out)], capsys)
    assert "--params-json" in msg and "JSON object" in msg
    rc, msg = _fails(dnn_main, ["train", "--dataset", "digits", "--model", "bn_cnn", "--epochs", "two",
                                "--out", str(out)], capsys)
    assert rc == 2 and "--epochs" in msg
    assert not out.exists()


def test_dnn_train_unknown_model_is_a_cli_error(tmp_path, capsys):
    from dnn.cli import main as dnn_main

    out = tmp_path / "m.pt"
    rc, msg = _fails(dnn_main, ["train", "--dataset", "digits", "--model", "resnet1000", "--out", str(out)], capsys)
    assert "resnet1000" in msg and "bn_cnn" in msg and not out.exists()


def test_dnn_export_tiles_and_evaluate_argument_errors(tmp_path, capsys):
    from dnn.cli import main as dnn_main

    out = tmp_path / "bank.npz"
    rc, msg = _fails(dnn_main, ["export-tiles", "--model", str(tmp_path / "m.pt"), "--out", str(out)], capsys)
    assert rc == 2 and "--circuit" in msg  # argparse: --circuit is required
    rc, msg = _fails(dnn_main, ["export-tiles", "--model", str(tmp_path / "m.pt"), "--circuit",
                                '{"preset": "paper1_64_w5"}', "--crossbar-json", '{"adc_bits": ', "--out", str(out)],
                     capsys)
    assert "--crossbar-json" in msg
    rc, msg = _fails(dnn_main, ["evaluate", "--model", str(tmp_path / "m.pt"), "--evaluation-json", "{seeds}",
                                "--out", str(tmp_path / "e.json")], capsys)
    assert "--evaluation-json" in msg
    rc, msg = _fails(dnn_main, ["evaluate", "--model", str(tmp_path / "m.pt"), "--methods", "none,prune",
                                "--out", str(tmp_path / "e.json")], capsys)
    assert "prune" in msg
    assert not out.exists() and not (tmp_path / "e.json").exists()


# ----------------------------------------------------------------------------- bad invocations
# (command, arguments, what the one line must name). {d}: a file that exists; {o}: an output that must
# not appear. Every stage, and the xbarchar command in front of them.
BAD_INVOCATIONS = [
    ("spice", [], "required"),
    ("spice", ["frobnicate"], "invalid choice: 'frobnicate'"),
    ("spice", ["simulate", "--out", "{o}", "--bogus"], "unrecognized arguments: --bogus"),
    ("spice", ["simulate"], "--out"),
    ("spice", ["simulate", "--shard", "two", "--out", "{o}"], "--shard: expected an integer >= 0, got 'two'"),
    ("spice", ["simulate", "--shard", "-1", "--out", "{o}"], "--shard: expected an integer >= 0"),
    ("spice", ["merge", "{d}", "--out", "{o}", "--threads", "-2"], "--threads"),
    ("spice", ["--threads", "2", "merge", "{d}", "--out", "{o}"], "options follow the subcommand"),
    ("spice", ["check", "--name", "x"], "unrecognized arguments: --name"),
    ("surrogate", [], "required"),
    ("surrogate", ["train", "--data", "{d}", "--out", "{o}", "--lr", "nan"], "--lr: expected a finite number > 0"),
    ("surrogate", ["train", "--data", "{d}", "--out", "{o}", "--weight-decay", "inf"], "--weight-decay"),
    ("surrogate", ["train", "--data", "{d}", "--out", "{o}", "--val-fraction", "0.7"], "--val-fraction"),
    ("surrogate", ["train", "--data", "{d}", "--out", "{o}", "--design", "magic"], "invalid choice: 'magic'"),
    ("surrogate", ["train", "--data", "{d}", "--out", "{o}", "--v-order", "x"], "--v-order"),
    ("surrogate", ["fidelity", "--surrogate", "{d}"], "--data"),
    ("surrogate", ["inspect", "{d}", "-v", "-q"], "not allowed with argument"),
    ("dnn", [], "required"),
    ("dnn", ["train", "--dataset", "digits", "--model", "bn_cnn", "--epochs", "0", "--out", "{o}"],
     "--epochs: expected an integer >= 1"),
    ("dnn", ["train", "--dataset", "digits", "--model", "bn_cnn", "--lr", "-inf", "--out", "{o}"], "--lr"),
    ("dnn", ["evaluate", "--model", "{d}", "--finetune-lr", "nan", "--out", "{o}"], "--finetune-lr"),
    ("dnn", ["evaluate", "--model", "{d}", "--mvm", "hspice", "--out", "{o}"], "invalid choice: 'hspice'"),
    ("dnn", ["--log-level", "INFO", "report", "{d}", "--md", "{o}", "--csv", "{o}", "--plot", "{o}"],
     "options follow the subcommand"),
    ("dnn", ["report", "--md", "{o}"], "required"),
    ("xbarchar", [], "required"),
    ("xbarchar", ["ngspice"], "invalid choice: 'ngspice'"),
    ("xbarchar", ["-v", "spice"], "options follow the subcommand"),
    ("xbarchar", ["spice", "simulate", "--out"], "--out: expected one argument"),
    ("xbarchar", ["dnn", "export-tiles", "--model", "{d}", "--circuit", "{{}}", "--n-tiles", "1e3", "--out", "{o}"],
     "--n-tiles: expected an integer >= 1, got '1e3'"),
]


@pytest.mark.parametrize("command,args,names", BAD_INVOCATIONS,
                         ids=[f"{c}:{' '.join(a)[:40]}" for c, a, _ in BAD_INVOCATIONS])
def test_every_bad_invocation_is_one_line_and_exit_2(tmp_path, command, args, names):
    import subprocess
    import sys

    from tests.conftest import REPO

    existing = tmp_path / "in.h5"
    existing.write_bytes(b"")
    out = tmp_path / "out.json"
    argv = [a.format(d=existing, o=out) for a in args]
    proc = subprocess.run([sys.executable, "-m", command, *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    prog = lines[0].split(": error: ")[0]
    assert prog.startswith(f"python -m {command}") or prog.startswith(command), lines[0]
    assert lines[0].endswith(f"(see {prog} --help)") and names in lines[0], lines[0]
    assert proc.stdout == "" and not out.exists()
