"""One convention for every stage command line: the same common options, after the subcommand, with
one default each (xbarchar/cli.py); numbers that refuse nan, inf and values out of range; and the
``xbarchar`` command that runs every stage."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from tests.conftest import CIRCUITS, REPO
from xbarchar import cli as xcli
from xbarchar.main import STAGES

COMMON = {"--threads", "-v", "--verbose", "-q", "--quiet", "--no-progress", "--debug"}


def _stage_parsers() -> dict[str, argparse.ArgumentParser]:
    from dnn.cli import build_parser as dnn_parser
    from pipeline.cli import build_parser as config_parser
    from spice.cli import build_parser as spice_parser
    from surrogate.cli import build_parser as surrogate_parser

    return {"spice": spice_parser(), "surrogate": surrogate_parser(), "dnn": dnn_parser(), "config": config_parser()}


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_subcommand_takes_the_common_options_with_one_default():
    parsers = _stage_parsers()
    assert set(parsers) == set(STAGES)
    seen = 0
    for stage, parser in parsers.items():
        root_flags = {s for a in parser._actions for s in a.option_strings}
        assert root_flags == {"-h", "--help"}, f"{stage}: options before the subcommand {root_flags}"
        for name, sub in _subcommands(parser).items():
            flags = {s: a for a in sub._actions for s in a.option_strings}
            assert COMMON <= set(flags), f"{stage} {name} lacks {COMMON - set(flags)}"
            assert flags["--threads"].default == xcli.DEFAULT_THREADS
            assert not {"--name", "--log-level"} & set(flags), f"{stage} {name}: an old spelling is back"
            if "--circuit" in flags:
                assert flags["--circuit-name"].default is None, f"{stage} {name}"
            seen += 1
    assert seen == 12  # spice 4, surrogate 3, dnn 4, config 1


@pytest.mark.parametrize("text,value", [("0", 0), ("7", 7), ("-0", 0)])
def test_integer_accepts_values_in_range(text, value):
    assert xcli.integer(0, 7)(text) == value


@pytest.mark.parametrize("text", ["-1", "8", "1.5", "1e3", "nan", "", "two"])
def test_integer_refuses_what_is_not_an_integer_in_range(text):
    with pytest.raises(argparse.ArgumentTypeError, match=r"expected an integer in \[0, 7\], got"):
        xcli.integer(0, 7)(text)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "NaN", "0", "-1e-9", "1.5", "x"])
def test_real_refuses_non_finite_and_out_of_range(text):
    with pytest.raises(argparse.ArgumentTypeError, match=r"expected a finite number in \(0, 1\], got"):
        xcli.real(0, 1, min_exclusive=True)(text)


def test_real_accepts_finite_values_in_range():
    assert xcli.real(0, 1, min_exclusive=True)("1e-3") == pytest.approx(1e-3)
    assert xcli.real(0)("0") == 0.0 and xcli.real()("-1e300") == -1e300


def test_threads_apply_while_the_command_runs_and_are_restored():
    torch = pytest.importorskip("torch")
    from threadpoolctl import threadpool_info

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    pools = {p["filepath"]: p["num_threads"] for p in threadpool_info()}
    try:
        args = argparse.Namespace(threads=1, verbose=False, quiet=False, no_progress=False)
        with xcli.configured(args):
            assert torch.get_num_threads() == 1
            assert all(p["num_threads"] == 1 for p in threadpool_info())
        assert torch.get_num_threads() == 2
        assert {p["filepath"]: p["num_threads"] for p in threadpool_info()} == pools
        with xcli.configured(argparse.Namespace(threads=0, verbose=False, quiet=False, no_progress=False)):
            assert torch.get_num_threads() == 2  # 0: the libraries' own choice, left alone
    finally:
        torch.set_num_threads(before)


@pytest.mark.spice
def test_xbarchar_command_runs_a_stage_with_the_options_after_the_subcommand(tmp_path):
    circuit = json.dumps({"netlist": str(CIRCUITS / "resistive.cir"), "rows": 3, "cols": 2})
    proc = subprocess.run([sys.executable, "-m", "xbarchar", "spice", "check", "--circuit", circuit,
                           "--circuit-name", "mine", "--threads", "1", "-q", "--debug"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("circuit 'mine' OK: 3x2") and proc.stderr == ""


def test_xbarchar_help_names_every_stage_and_a_stage_help_names_its_prog():
    top = subprocess.run([sys.executable, "-m", "xbarchar", "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert top.returncode == 0 and all(stage in top.stdout for stage in STAGES)
    sub = subprocess.run([sys.executable, "-m", "xbarchar", "spice", "merge", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert sub.returncode == 0 and sub.stdout.startswith("usage: xbarchar spice merge")
    assert "common options:" in sub.stdout and "--threads N" in sub.stdout


def test_seeds_are_bounded_where_the_generators_take_them():
    """numpy and scikit-learn take seeds in [0, 2**32 - 1]: a larger one is refused naming the flag or key."""
    from dnn.cli import build_parser as dnn_parser
    from dnn.settings import TrainSettings
    from spice.sampling import SamplingConfig
    from xbarchar.settings import MAX_SEED, SettingsError

    assert MAX_SEED == 2**32 - 1
    parser = dnn_parser()
    assert parser.parse_args(["train", "--params-json", "{}", "--out", "m.pt", "--seed", str(MAX_SEED)]).seed == MAX_SEED
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["train", "--params-json", "{}", "--out", "m.pt", "--seed", str(MAX_SEED + 1)])
    assert exc.value.code == 2
    with pytest.raises(SettingsError, match=r"seed .*\[0, 4294967295\]"):
        TrainSettings(dataset="digits", model="bn_cnn", seed=MAX_SEED + 1)
    with pytest.raises(ValueError, match=r"seed"):
        SamplingConfig.from_dict({"seed": 10**30})
