"""An interrupted evaluation resumes from its per-seed partial results (dnn.checkpoint)."""

import json

import pytest

import dnn.evaluate
from dnn.checkpoint import SeedCheckpoint, partial_path
from dnn.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EVALUATION = {"methods": ["none", "bn_adapt"], "seeds": [0, 1, 2], "calibration_samples": 128,
              "bn_adapt": {"n_draws": 1}, "eval_draws": 1}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "digits_small.pt"
    params = {"dataset": "digits", "model": "bn_cnn", "epochs": 2, "batch_size": 32, "lr": 0.003, "seed": 3,
              "width": 0.5}
    assert main(["train", "-q", "--params-json", json.dumps(params), "--no-progress", "--out", str(out)]) == 0
    return out


def evaluate(model_path, out, evaluation=EVALUATION):
    return main(["evaluate", "-q", "--model", str(model_path), "--rows", "32", "--cols", "32", "--scenario", "noise",
                 "--crossbar-json", '{"read_noise_sigma": 0.2}', "--evaluation-json", json.dumps(evaluation),
                 "--no-progress", "--device", "cpu", "--out", str(out)])


def accuracies(out):
    return {k: m["accuracies"] for k, m in json.loads(out.read_text())["methods"].items()}


@pytest.fixture
def conversions(monkeypatch):
    """The seeds that run (each draws its seeded calibration subset once; one calibration size here)."""
    seen = []
    loader = dnn.evaluate.calibration_loader

    def counting(data, n, batch_size, seed):
        seen.append(seed)
        return loader(data, n, batch_size, seed)

    monkeypatch.setattr(dnn.evaluate, "calibration_loader", counting)
    return seen


def test_interrupted_evaluation_resumes_at_the_next_seed(model_path, tmp_path, monkeypatch, conversions):
    whole = tmp_path / "whole.json"
    assert evaluate(model_path, whole) == 0
    assert conversions == [0, 1, 2] and not partial_path(whole).exists()  # removed once the result is written

    out = tmp_path / "interrupted.json"
    save = SeedCheckpoint.save

    def save_then_stop(self, seed, record):
        save(self, seed, record)
        if len(self.seeds) == 2:
            raise KeyboardInterrupt  # stopped after the second seed
    monkeypatch.setattr(SeedCheckpoint, "save", save_then_stop)
    conversions.clear()
    assert evaluate(model_path, out) == 130  # the CLI's exit code for an interruption (Ctrl-C)
    assert not out.exists() and partial_path(out).exists()
    assert sorted(json.loads(partial_path(out).read_text())["seeds"]) == ["0", "1"]

    monkeypatch.setattr(SeedCheckpoint, "save", save)
    conversions.clear()
    assert evaluate(model_path, out) == 0
    assert conversions == [2]  # only the seed not done
    assert accuracies(out) == accuracies(whole)  # the same code on the same seeds: the same numbers
    assert not partial_path(out).exists()


def test_partial_results_of_other_inputs_are_ignored(model_path, tmp_path, monkeypatch, conversions, caplog):
    out = tmp_path / "other.json"
    ck = SeedCheckpoint(partial_path(out), "another evaluation's key")
    ck.save(0, {"runs": {"none": {"accuracy": 0.0}, "bn_adapt": {"accuracy": 0.0}}, "pc2": {}})
    assert evaluate(model_path, out, {**EVALUATION, "seeds": [0]}) == 0
    assert conversions == [0]  # run, not taken from the file
    assert json.loads(out.read_text())["methods"]["none"]["accuracy_mean"] > 0.5


@pytest.mark.parametrize("content", [b"{not json", b'{"kind": "something else"}', b"\xff\xfe"])
def test_unreadable_partial_results_are_ignored(tmp_path, content):
    path = tmp_path / "x.json.partial.json"
    path.write_bytes(content)
    assert SeedCheckpoint(path, "k").load() == {}


def test_a_link_in_place_of_partial_results_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere.json"
    target.write_text("{}")
    path = tmp_path / "x.json.partial.json"
    path.symlink_to(target)
    assert SeedCheckpoint(path, "k").load() == {}
