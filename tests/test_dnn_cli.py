"""The CLI as the workflow calls it: train --params-json, evaluate with JSON settings, report."""

import json

import pytest

from dnn.cli import main
from dnn.train import load_model
from tests.conftest import assert_cli_error

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "digits_small.pt"
    params = {"dataset": "digits", "model": "bn_cnn", "epochs": 1, "batch_size": 32, "lr": 0.003, "seed": 3,
              "width": 0.5}
    rc = main(["train", "-q", "--params-json", json.dumps(params), "--epochs", "2",
               "--no-progress", "--out", str(out)])
    assert rc == 0
    return out


def test_train_params_json_and_flag_override(model_path, capsys):
    model, meta = load_model(model_path)
    p = meta["metrics"]["params"]
    assert p["epochs"] == 2 and p["width"] == 0.5 and p["seed"] == 3  # flag wins over --params-json
    assert meta["metrics"]["test_accuracy"] > 0.8
    assert_cli_error(capsys, main, ["train", "--params-json", '{"dataset": "digits", "model": "bn_cnn", "epoch": 1}',
                                    "--out", "x.pt"], "unknown key\\(s\\) \\['epoch'\\]")


def test_evaluate_workflow_flags_and_report(model_path, tmp_path):
    out = tmp_path / "eval" / "ideal_circuit" / "digits_small" / "noise.json"
    evaluation = {"methods": ["none", "bn_adapt", "adapt_finetune"], "seeds": [0, 1], "calibration_samples": 256,
                  "bn_adapt": {"n_draws": 2}, "bn_finetune": {"epochs": 1, "lr": 0.01}, "eval_draws": 2}
    rc = main(["evaluate", "-q", "--model", str(model_path), "--circuit-name", "p64",
               "--circuit", '{"preset": "paper1_64_w5"}', "--scenario", "noise",
               "--crossbar-json", '{"read_noise_sigma": 0.1, "adc_range_fraction": 0.5}',
               "--evaluation-json", json.dumps(evaluation), "--no-progress", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert (res["circuit"], res["model"], res["scenario"]) == ("p64", "digits_small", "noise")
    assert res["mvm"]["rows"] == 64 and res["mvm"]["g_on_s"] == pytest.approx(1 / 20e3)  # from the preset
    assert res["xbar_config"]["read_noise_sigma"] == 0.1
    m = res["methods"]
    assert set(m) == {"none", "bn_adapt", "adapt_finetune"}
    for r in m.values():
        accs = r["accuracies"]
        assert len(accs) == 4  # 2 seeds x 2 eval draws
        assert all(abs(a * 360 - round(a * 360)) < 1e-9 for a in accs)  # fractions of the 360 digits test images
        assert len(set(accs)) > 1  # per-read noise: every pass draws anew
        assert r["accuracy_mean"] == pytest.approx(sum(accs) / 4)
        assert r["accuracy_std"] == pytest.approx((sum((a - sum(accs) / 4) ** 2 for a in accs) / 4) ** 0.5)
        # per seed: the mean of that seed's draws
        assert r["accuracy_per_seed"] == pytest.approx([(accs[0] + accs[1]) / 2, (accs[2] + accs[3]) / 2])
        pc2 = r["pc2_per_layer"]
        assert len(pc2) == 3 and all(0 < v < 1 for v in pc2.values())  # three conv layers, noisy: off the line
        assert r["pc2_mean"] == pytest.approx(sum(pc2.values()) / 3)
    assert m["adapt_finetune"]["trainable_params"] > 0 and m["bn_adapt"]["trainable_params"] == 0
    assert m["none"]["accuracy_mean"] > 0.5

    md, csv, png = tmp_path / "r.md", tmp_path / "r.csv", tmp_path / "r.png"
    assert main(["report", "-q", str(out), "--md", str(md), "--csv", str(csv),
                 "--plot", str(png)]) == 0
    means = " | ".join(f"{100 * m[k]['accuracy_mean']:.1f} ± {100 * m[k]['accuracy_std']:.1f}"
                       for k in ("none", "bn_adapt", "adapt_finetune"))
    assert f"| p64 | digits_small | noise | {100 * res['software_accuracy']:.1f} | {means} |" in md.read_text()
    assert "adapt_finetune" in csv.read_text() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_rejects_bad_settings(model_path, tmp_path, capsys):
    out = str(tmp_path / "e.json")
    assert_cli_error(capsys, main, ["evaluate", "--model", str(model_path), "--evaluation-json", '{"seed": 1}',
                                    "--out", out], "unknown key\\(s\\) \\['seed'\\]")
    assert_cli_error(capsys, main, ["evaluate", "--model", str(model_path), "--crossbar-json", '{"adc_bit": 4}',
                                    "--out", out], "--crossbar-json: unknown CrossbarConfig key")
    assert_cli_error(capsys, main, ["evaluate", "--model", str(model_path), "--mvm", "exact", "--methods", "none",
                                    "--out", out], "--mvm exact needs --circuit")


def test_evaluate_calibrates_the_adc_range(model_path, tmp_path):
    out = tmp_path / "cal.json"
    assert main(["evaluate", "-q", "--model", str(model_path), "--circuit-name", "p64",
                 "--circuit", '{"preset": "paper1_64_w5"}', "--mvm", "exact", "--methods", "none,bn_adapt",
                 "--crossbar-json", '{"adc_range": "calibrated", "adc_range_fraction": 1.0}',
                 "--evaluation-json", '{"calibration_samples": 128}', "--no-progress", "--device", "cpu",
                 "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["xbar_config"]["adc_range"] == "calibrated"
    # exact linear-array physics (1 kOhm driver and sense): the column currents shrink to ~20% of ideal
    # and BN sees wrong statistics; with the ADC range calibrated on the array, BN adaptation restores
    # the software accuracy (README: 99.2% for the full model)
    none, adapt = (res["methods"][k]["accuracy_mean"] for k in ("none", "bn_adapt"))
    assert none < 0.5 and adapt > 0.8 and adapt > res["software_accuracy"] - 0.05
    assert abs(adapt * 360 - round(adapt * 360)) < 1e-9
