"""Software baseline on real data, save/load in another process, and the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dnn.cli import main
from dnn.config import CrossbarConfig
from dnn.convert import convert_to_crossbar
from dnn.datasets import load_dataset
from dnn.models import build_model
from dnn.mvm import IdealTileMVM
from dnn.train import evaluate, load_model, make_loader, save_model, train_model
from tests.conftest import assert_cli_error

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data = load_dataset("digits", seed=0)
    kwargs = {"in_channels": 1, "num_classes": 10, "image_size": 8}
    torch.manual_seed(0)
    model = build_model("bn_cnn", **kwargs)
    history = train_model(model, make_loader(data.train, 32, shuffle=True, seed=0), epochs=2, lr=3e-3,
                          progress=False)
    path = tmp_path_factory.mktemp("models") / "digits_bn_cnn.pt"
    acc = evaluate(model, make_loader(data.test, 256))
    save_model(path, model, "bn_cnn", kwargs, dataset={"name": "digits", "seed": 0},
               metrics={"test_accuracy": acc})
    return model, data, path, acc, history


def test_bn_cnn_learns_digits(trained):
    model, data, _, acc, history = trained
    assert acc > 0.85
    assert history[1]["loss"] < history[0]["loss"]
    # an 8-bit crossbar (ideal tiles, 8-bit DAC and ADC) keeps most of the accuracy
    xbar = convert_to_crossbar(model, CrossbarConfig(), IdealTileMVM(64, 64, 5e-6, 50e-6, 0.2))
    assert evaluate(xbar, make_loader(data.test, 256)) > acc - 0.1


def test_save_load_round_trip(trained, tmp_path):
    model, data, path, acc, _ = trained
    loaded, meta = load_model(path)
    assert meta["model_name"] == "bn_cnn" and meta["dataset"]["name"] == "digits"
    x = data.test.tensors[0][:16]
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    bad = tmp_path / "bad.pt"
    torch.save({"format_version": 99}, bad)
    with pytest.raises(ValueError, match="format_version 99 is not supported"):
        load_model(bad)


def test_cli_evaluate_in_another_process(trained, tmp_path):
    _, _, path, acc, _ = trained
    out = tmp_path / "eval.json"
    cmd = [sys.executable, "-m", "dnn", "evaluate", "-q", "--model-path", str(path),
           "--methods", "none,bn_adapt", "--adapt-batches", "4", "--xbar-config", '{"read_noise_sigma": 0.05}',
           "--device-preset", "rram", "--no-progress", "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["software_accuracy"] == pytest.approx(acc)
    assert res["xbar_config"]["read_noise_sigma"] == 0.05 and res["mvm"]["g_on_s"] == pytest.approx(5e-5)
    assert set(res["methods"]) == {"none", "bn_adapt"}
    assert res["methods"]["none"]["accuracy_mean"] > 0.7
    assert res["methods"]["none"]["trainable_params"] == 0 and res["methods"]["bn_adapt"]["trainable_params"] == 0
    # bn_adapt forwards 4 batches: it takes longer than no mitigation at all
    assert res["methods"]["bn_adapt"]["wall_s"] > res["methods"]["none"]["wall_s"]


def test_cli_train_writes_model_and_metrics(tmp_path):
    out, metrics = tmp_path / "m.pt", tmp_path / "m.json"
    rc = main(["train", "-q", "--dataset", "digits", "--model", "bn_cnn", "--width", "0.25",
               "--epochs", "1", "--n-train", "300", "--no-progress", "--out", str(out), "--metrics", str(metrics)])
    assert rc == 0
    m = json.loads(metrics.read_text())
    assert m["n_train"] == 300
    model, meta = load_model(out)
    assert meta["model_kwargs"]["width"] == 0.25 and meta["dataset"]["n_train"] == 300
    # the recorded test accuracy is that of the saved model on the digits test split (360 images)
    from dnn.datasets import load_dataset
    from dnn.train import evaluate, make_loader

    test = load_dataset("digits").test
    assert m["test_accuracy"] == pytest.approx(evaluate(model, make_loader(test, 128), "cpu"))
    assert abs(m["test_accuracy"] * len(test) - round(m["test_accuracy"] * len(test))) < 1e-9


def test_cli_unknown_method_is_named(trained, tmp_path, capsys):
    _, _, path, _, _ = trained
    assert_cli_error(capsys, main, ["evaluate", "--model-path", str(path), "--methods", "magic", "--out",
                                    str(tmp_path / "e.json")], "methods.*unknown: \\['magic'\\]")
