"""The light rivals of BN-only mitigation (drift compensation, LoRA, VeRA), their cost, matched budgets
and the fine-tune safeguard, on converted models with exact, deterministic tile models."""

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from dnn.adapters import (
    LayerShape,
    add_lora,
    add_vera,
    attached,
    check_rank,
    layer_shapes,
    lora_parameter_count,
    model_layer_shapes,
    rank_for_budget,
    shared_vera_matrices,
    vera_parameter_count,
)
from dnn.config import CrossbarConfig
from dnn.convert import convert_to_crossbar
from dnn.mitigation import (
    apply_method,
    batchnorm_layers,
    holdout_scores,
    method_variants,
    split_holdout,
    stored_per_chip,
)
from dnn.models import build_model
from dnn.mvm import TransferTileMVM
from dnn.settings import EvaluationSettings, LoraSettings, VeraSettings
from dnn.train import make_loader, resolve_device

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUIET = CrossbarConfig(seed=1)  # no read noise: every forward is the same, so scores can be compared
EXACT = CrossbarConfig(input_bits=0, adc_bits=0, seed=1)  # no DAC/ADC rounding either
IDEAL = TransferTileMVM(32, 16, 5e-6, 50e-6, 0.2, transfer_fn=lambda g: g)
HALF = TransferTileMVM(32, 16, 5e-6, 50e-6, 0.2, transfer_fn=lambda g: 0.5 * g)  # every current halved

# bn_cnn at width 0.25 on 1x8x8: convs 1->8, 8->16, 16->16 (3x3): (d_in, d_out) = (9, 8), (72, 16), (144, 16);
# BN channels 8 + 16 + 16 = 40: 80 gamma/beta, 80 running mean/var; classifier 16 -> 10 (digital).
BN_AFFINE, BN_STATS = 80, 80
ALL_PARAMS = 9 * 8 + 72 * 16 + 144 * 16 + 2 * 40 + 16 * 10 + 10  # conv weights, BN gamma/beta, classifier


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))


def _converted(cfg=QUIET, mvm=IDEAL, model_seed=0):
    torch.manual_seed(model_seed)
    model = build_model("bn_cnn", 1, 10, 8, width=0.25)
    for bn in batchnorm_layers(model):  # non-trivial statistics and affine parameters, as after training
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        nn.init.uniform_(bn.weight, 0.5, 1.5)
        nn.init.uniform_(bn.bias, -0.2, 0.2)
    return convert_to_crossbar(model, cfg, mvm)


def test_layer_shapes_are_the_hand_counted_ones():
    model = _converted()
    assert [(s.d_in, s.d_out) for s in layer_shapes(model)] == [(9, 8), (72, 16), (144, 16)]
    meta = model_layer_shapes("bn_cnn", "digits", 0.25, "conv")
    assert meta == layer_shapes(model)
    assert [(s.d_in, s.d_out) for s in model_layer_shapes("bn_cnn", "digits", 0.25, "all")][-1] == (16, 10)


@pytest.mark.parametrize("method, kwargs, trained, stored_scalars", [
    ("none", {}, 0, 0),
    ("bn_adapt", {}, 0, BN_STATS),
    ("bn_finetune", {"finetune": {"epochs": 1, "progress": False}}, BN_AFFINE, BN_AFFINE + BN_STATS),
    ("drift_compensation", {}, 0, 3),  # one scale per layer
    ("drift_compensation", {"per_column": True}, 0, 8 + 16 + 16),
    # LoRA rank 2: 2 (9 + 8) + 2 (72 + 16) + 2 (144 + 16) = 530 trained; plus the BN statistics
    ("lora", {"adapter": {"rank": 2, "epochs": 1}, "progress": False}, 530, 530 + BN_STATS),
    # VeRA rank 3: (3 + 8) + (3 + 16) + (3 + 16) = 49 trained (the shared matrices come from a seed)
    ("vera", {"adapter": {"rank": 3, "epochs": 1}, "progress": False}, 49, 49 + BN_STATS),
    ("retrain", {"epochs": 1, "max_batches": 1, "progress": False}, ALL_PARAMS, ALL_PARAMS + BN_STATS),
])
def test_trained_parameters_and_bytes_per_chip_match_a_hand_count(method, kwargs, trained, stored_scalars):
    model = _converted()
    _, cost, n_trained = apply_method(method, model, make_loader(_data(), 32, shuffle=True), **kwargs)
    assert n_trained == trained == cost.extra["trained_parameters"]
    assert cost.bytes_per_chip == 4 * stored_scalars  # float32
    assert cost.calibration_images == (0 if method == "none" else 96)
    assert stored_per_chip(method, model) == (trained, 4 * stored_scalars)


def test_parameter_counts_and_budget_ranks():
    shapes = [LayerShape("a", 9, 8), LayerShape("b", 72, 16), LayerShape("c", 144, 16)]
    assert lora_parameter_count(shapes, 2) == 530
    assert vera_parameter_count(shapes, 3) == 49
    # budget 1x BN = 80: LoRA rank 1 costs 265 already (clamped up); 16x = 1280 -> 1280 / 265 = 4.83 -> 5
    assert rank_for_budget("lora", shapes, 80) == (1, True)
    assert rank_for_budget("lora", shapes, 1280) == (5, False)
    # VeRA: 40 + 3 r = 80 -> r = 13.3 -> 13; 4x = 320 -> r = 93.3 -> 93 (largest: 9 x 8 = 72, clamped)
    assert rank_for_budget("vera", shapes, 80) == (13, False)
    assert rank_for_budget("vera", shapes, 320) == (72, True)
    check_rank("lora", shapes, 8)
    for bad in (0, 9):
        with pytest.raises(ValueError, match=r"lora rank .*\[1, 8\].*layer a: 9 x 8"):
            check_rank("lora", shapes, bad)
    with pytest.raises(ValueError, match=r"vera rank 73: expected an integer in \[1, 72\]"):
        check_rank("vera", shapes, 73)


def test_method_variants_name_ranks_and_calibration_sizes():
    settings = EvaluationSettings(methods=("none", "bn_adapt", "lora", "vera"), calibration_sizes=(10, 100),
                                  lora=LoraSettings(param_budget_x_bn=(1.0, 4.0, 16.0)),
                                  vera=VeraSettings(param_budget_x_bn=(1.0,), ranks=(2,)))
    variants = method_variants(settings, _converted())
    labels = [v.label for v in variants]
    assert labels == ["none", "bn_adapt_n10", "bn_adapt_n100", "lora_r1_n10", "lora_r5_n10", "lora_r1_n100",
                      "lora_r5_n100", "vera_r2_n10", "vera_r13_n10", "vera_r2_n100", "vera_r13_n100"]
    lora_r1 = next(v for v in variants if v.label == "lora_r1_n10")
    assert lora_r1.budgets_x_bn == (1.0, 4.0) and lora_r1.calibration_images == 10  # 1x and 4x: both rank 1
    with pytest.raises(ValueError, match="evaluation.lora.ranks: lora rank 9"):
        method_variants(EvaluationSettings(methods=("lora",), lora=LoraSettings(ranks=(9,))), _converted())


def test_lora_with_zero_b_leaves_the_outputs_unchanged():
    model = _converted()
    x = _data(16, seed=3).tensors[0]
    with torch.no_grad():
        before = model.eval()(x)
        add_lora(model, rank=4, seed=0)
        after = model.eval()(x)
    assert torch.equal(before, after)
    assert all(torch.count_nonzero(a.lora_a) > 0 and torch.count_nonzero(a.lora_b) == 0
               for a in attached(model).values())


def test_lora_training_changes_only_the_adapters_and_bn_statistics():
    model = _converted()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    apply_method("lora", model, make_loader(_data(), 32, shuffle=True), adapter={"rank": 2, "epochs": 2, "lr": 0.05},
                 safeguard={"holdout_fraction": 0.0}, progress=False)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("running_" in k or "num_batches" in k for k in changed)  # weights, gamma/beta kept
    assert any(torch.count_nonzero(a.lora_b) > 0 for a in attached(model).values())


def test_vera_matrices_are_frozen_shared_and_seeded():
    model = _converted()
    apply_method("vera", model, make_loader(_data(), 32, shuffle=True),
                 adapter={"rank": 6, "epochs": 2, "lr": 0.05, "matrix_seed": 4, "d_init": 0.1},
                 safeguard={"holdout_fraction": 0.0}, progress=False)
    adapters = list(attached(model).values())
    assert len(adapters) == 3
    a_ref, b_ref = shared_vera_matrices(layer_shapes(model), 6, 4)
    for ad in adapters:
        assert ad.shared_a.data_ptr() == adapters[0].shared_a.data_ptr()  # one tensor for every layer
        assert ad.shared_b.data_ptr() == adapters[0].shared_b.data_ptr()
        assert not ad.shared_a.requires_grad and not ad.shared_b.requires_grad
        assert torch.equal(ad.shared_a, a_ref) and torch.equal(ad.shared_b, b_ref)  # untouched by training
        assert {n for n, _ in ad.named_parameters()} == {"vera_d", "vera_b"}
    assert any(torch.count_nonzero(ad.vera_b) > 0 for ad in adapters)
    assert any(not torch.equal(ad.vera_d, torch.full_like(ad.vera_d, 0.1)) for ad in adapters)
    # the shared matrices survive a deep copy as one tensor
    twin = attached(copy.deepcopy(model))
    first = next(iter(twin.values()))
    assert all(t.shared_a.data_ptr() == first.shared_a.data_ptr() for t in twin.values())


def test_vera_starts_as_a_no_op():
    model = _converted()
    x = _data(8, seed=2).tensors[0]
    with torch.no_grad():
        before = model.eval()(x)
        add_vera(model, rank=5, seed=0, d_init=0.1)
        assert torch.equal(before, model.eval()(x))


def _exact_weights(model):
    """Weights that 8-bit symmetric quantization keeps exactly: integers k (|k| <= 127, max 127) times a step."""
    g = torch.Generator().manual_seed(7)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            k = torch.randint(-127, 128, m.weight.shape, generator=g).float()
            k.view(-1)[0] = 127.0
            m.weight.data = k / 1270.0
    return model


def test_drift_compensation_restores_a_global_scale_exactly():
    """Every column current halved (a scaled conductance on an exact tile, no DAC/ADC rounding): the
    estimated scale is 2 and the compensated network gives the unscaled network's outputs, compared
    with a separately converted model on the unscaled tile (an independent reference)."""
    torch.manual_seed(0)
    base = _exact_weights(build_model("bn_cnn", 1, 10, 8, width=0.25)).eval()
    lossy, ideal = convert_to_crossbar(base, EXACT, HALF), convert_to_crossbar(base, EXACT, IDEAL)
    x = _data(16, seed=5).tensors[0]
    with torch.no_grad():
        far = (lossy.eval()(x) - ideal.eval()(x)).abs().max()
    apply_method("drift_compensation", lossy, make_loader(_data(), 32))
    scales = [float(a.scale) for a in attached(lossy).values()]
    assert scales == pytest.approx([2.0] * 3, rel=1e-5)  # float32 sums of ~1e4 terms
    with torch.no_grad():
        out, ref = lossy(x), ideal(x)
    tol = 1e-4 * float(ref.abs().max())
    assert far > 30 * tol  # the halving is visible at the output before compensation
    assert torch.allclose(out, ref, rtol=1e-4, atol=tol)


def test_drift_compensation_per_column_restores_column_gains():
    gains = torch.linspace(0.3, 1.0, 16, dtype=torch.float64).numpy()
    per_col = TransferTileMVM(32, 16, 5e-6, 50e-6, 0.2, transfer_fn=lambda g: g * gains)
    torch.manual_seed(0)
    base = _exact_weights(build_model("bn_cnn", 1, 10, 8, width=0.25)).eval()
    cfg = EXACT.replace(encoding="differential")
    lossy, ideal = convert_to_crossbar(base, cfg, per_col), convert_to_crossbar(base, cfg, IDEAL)
    apply_method("drift_compensation", lossy, make_loader(_data(), 32), per_column=True)
    x = _data(16, seed=5).tensors[0]
    with torch.no_grad():
        out, ref = lossy.eval()(x), ideal.eval()(x)
    assert torch.allclose(out, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


def _learnable(n, seed):
    """Images whose label is a fixed linear function of the pixels (argmax of a seeded projection)."""
    x = _data(n, seed).tensors[0]
    proj = torch.randn(64, 10, generator=torch.Generator().manual_seed(99))
    return TensorDataset(x, (x.flatten(1) @ proj).argmax(1))


@pytest.fixture(scope="module")
def trained():
    """A software bn_cnn trained on learnable data (a start worth keeping) and 160 calibration images."""
    from dnn.train import fit

    torch.manual_seed(0)
    model = build_model("bn_cnn", 1, 10, 8, width=0.5)
    fit(model, make_loader(_learnable(512, 1), 32, shuffle=True), model.parameters(), 15, 0.01, progress=False)
    return model.eval(), _learnable(160, 11)


@pytest.mark.parametrize("method, kwargs", [
    ("bn_finetune", {"finetune": {"epochs": 3, "lr": 3.0, "lr_step_epochs": 5, "progress": False}}),
    ("lora", {"adapter": {"rank": 4, "epochs": 3, "lr": 3.0, "lr_step_epochs": 5}, "progress": False}),
    ("vera", {"adapter": {"rank": 8, "epochs": 3, "lr": 30.0, "lr_step_epochs": 5}, "progress": False}),
])
def test_the_safeguard_never_ends_below_its_start_on_held_out_data(trained, method, kwargs):
    """A learning rate far too large wrecks a trained network; with the safeguard the kept state scores at
    least as well on the held-out images as the start did, without it (Paper 1's setting) it ends below."""
    software, data = trained
    loader = make_loader(data, 32, shuffle=True)
    device = resolve_device("cpu")
    results = {}
    for fraction in (0.25, 0.0):
        model = convert_to_crossbar(software, QUIET, HALF)
        _, cost, _ = apply_method(method, model, loader, device="cpu", seed=3, safeguard={"holdout_fraction": fraction},
                                  adapt={"n_draws": 1}, **kwargs)
        _, hold = split_holdout(loader, 0.25, 3)  # the same held-out images either way
        results[fraction] = (holdout_scores(model, hold, device), cost.details["safeguard"])
    (acc, loss), record = results[0.25]
    start_acc, start_loss = record["holdout_accuracy"][0], record["holdout_loss"][0]
    assert record["holdout_images"] == 40 and record["train_images"] == 120
    assert len(record["holdout_accuracy"]) == 4  # the start and three epochs
    assert acc > start_acc or (acc == start_acc and loss <= start_loss + 1e-6 * abs(start_loss))
    # training did wreck the state at some epoch, so keeping the last one would fail the check above
    later = zip(record["holdout_accuracy"][1:], [-v for v in record["holdout_loss"][1:]], strict=True)
    assert min(later) < (start_acc, -start_loss)
    (acc0, _), record0 = results[0.0]
    assert record0["holdout_images"] == 0 and record0["kept_epoch"] is None  # Paper 1's setting: no holdout


def test_rivals_report_rows_recovered_share_and_older_files(tmp_path):
    """The table's 'recovered' is (method - none) / (software - none) per seed; a result file written before
    the cost fields existed still loads (bytes and calibration images unknown)."""
    import json

    from dnn.report_rivals import load_rows, markdown, recovered
    from dnn.results import EvaluationResult, MethodResult

    def entry(per_seed, **cost):
        return MethodResult(accuracy_mean=sum(per_seed) / 2, accuracy_std=0.0, accuracies=per_seed,
                            accuracy_per_seed=per_seed, trainable_params=cost.pop("params", 0), wall_s=1.0,
                            peak_mem_mb=1.0, memory_kind="x", **cost)
    result = EvaluationResult(circuit="c", model="m", scenario="s", architecture="bn_cnn", model_path="",
                              software_accuracy=0.9, methods={
                                  "none": entry([0.5, 0.3], method="none", calibration_images=0, bytes_per_chip=0),
                                  "lora_r2_n10": entry([0.7, 0.9], method="lora", rank=2, calibration_images=10,
                                                       bytes_per_chip=2440, params=530)})
    path = tmp_path / "r.json"
    result.write(path)
    rows = {r["label"]: r for r in load_rows([path])}
    lora = rows["lora_r2_n10"]
    assert lora["recovered_mean"] == pytest.approx(((0.7 - 0.5) / 0.4 + (0.9 - 0.3) / 0.6) / 2)
    assert (lora["method"], lora["rank"], lora["calibration_images"], lora["bytes_per_chip"]) == ("lora", 2, 10, 2440)
    assert "| s | c | lora | 2 | 10 | 80.0 ± 14.1 |" in markdown(list(rows.values()))
    assert recovered(0.8, 0.8, 0.8) != recovered(0.8, 0.8, 0.8)  # no gap: NaN
    old = json.loads(path.read_text())
    for m in old["methods"].values():
        for key in ("method", "bytes_per_chip", "calibration_images", "rank", "param_budget_x_bn", "safeguard"):
            m.pop(key)
    path.write_text(json.dumps(old))
    again = {r["label"]: r for r in load_rows([path])}
    assert again["lora_r2_n10"]["method"] == "lora_r2_n10" and again["lora_r2_n10"]["bytes_per_chip"] is None


def test_evaluate_methods_runs_every_variant_and_resumes_from_a_json_seed_record():
    """The evaluation runs one entry per (method, rank, calibration size) with its cost fields; each seed's
    record survives a JSON round trip (the CLI's partial file) and a resumed run takes it as it is."""
    import json

    from dnn.datasets import DatasetSplit
    from dnn.evaluate import evaluate_methods

    train, test = _data(120, seed=1), _data(40, seed=2)
    data = DatasetSplit("toy", train, test, 10, 1, 8, (0.0,), (1.0,))
    settings = EvaluationSettings(methods=("none", "drift_compensation", "lora"), seeds=(0, 1),
                                  calibration_samples=100, calibration_sizes=(20, 100),
                                  lora=LoraSettings(param_budget_x_bn=(), ranks=(1,), epochs=1))
    model = build_model("bn_cnn", 1, 10, 8, width=0.25).eval()
    records = {}
    _, results = evaluate_methods(model, data, IDEAL, QUIET, settings, torch.device("cpu"), batch_size=32,
                                  progress=False, on_seed_done=lambda s, r: records.setdefault(s, json.loads(json.dumps(r))))
    assert list(results) == ["none", "drift_compensation_n20", "drift_compensation_n100", "lora_r1_n20", "lora_r1_n100"]
    lora = results["lora_r1_n20"]
    assert (lora.method, lora.rank, lora.calibration_images, lora.trainable_params) == ("lora", 1, 20, 265)
    assert lora.bytes_per_chip == 4 * (265 + BN_STATS) and len(lora.safeguard) == 2
    assert lora.safeguard[0]["holdout_images"] == 4  # 20% of 20 images
    assert results["none"].calibration_images == 0 and results["drift_compensation_n100"].bytes_per_chip == 12
    assert (lora.start_method, results["drift_compensation_n20"].start_method, results["none"].start_method) \
        == ("bn_adapt", "", "")  # what the report's below-start warning compares lora with
    _, again = evaluate_methods(model, data, IDEAL, QUIET, settings, torch.device("cpu"), batch_size=32,
                                progress=False, done_seeds=records)
    assert {k: v.accuracy_per_seed for k, v in again.items()} == {k: v.accuracy_per_seed for k, v in results.items()}


def _rival_rows(per_method: dict[str, tuple[list[float], int]], software: float = 0.96) -> list[dict]:
    """Rows as dnn.report_rivals.load_rows makes them: {label: (accuracy per seed, trained parameters)}."""
    rows = []
    for label, (accs, params) in per_method.items():
        method, _, rank = label.partition("_r")
        rows.append({"scenario": "s", "circuit": "c", "model": "m", "label": label, "method": method,
                     "rank": int(rank) if rank else None, "calibration_images": 100 if method != "none" else 0,
                     "software": software, "accuracy_mean": sum(accs) / len(accs), "accuracy_per_seed": accs,
                     "trainable_params": params})
    return rows


def test_rival_statements_carry_the_interval_over_seeds_and_say_inconclusive():
    """Each statement's verdict comes from the Student-t interval of its quantity over seeds (paired seed by
    seed for a difference), checked here against the formula; a threshold inside it is 'inconclusive'."""
    import statistics

    from scipy.stats import t

    from dnn.report_rivals import statements

    rows = _rival_rows({"none": ([0.1, 0.1, 0.1], 0), "bn_adapt": ([0.90, 0.91, 0.92], 0),
                        "bn_finetune": ([0.93, 0.935, 0.94], 320), "drift_compensation": ([0.5, 0.5, 0.5], 0),
                        "vera_r53": ([0.931, 0.937, 0.941], 319), "lora_r5": ([0.955, 0.958, 0.956], 5165)})
    got = {s["kind"]: s for s in statements(rows)}
    gap = [100 * (0.96 - a) for a in (0.93, 0.935, 0.94)]
    half = t.ppf(0.975, 2) * statistics.stdev(gap) / 3 ** 0.5
    assert got["bn_suffices"]["verdict"] == "NO" and got["bn_suffices"]["method"] == "bn_finetune"
    assert got["bn_suffices"]["difference_points"]["low"] == pytest.approx(statistics.fmean(gap) - half)
    equal = got["rival_equal_budget"]  # vera r53: 319 <= 1.1 x 320; +0.1, +0.2, +0.1 points: inside the interval
    assert (equal["method"], equal["reference"], equal["verdict"]) == ("vera r53", "bn_finetune", "inconclusive")
    diff = [100 * (a - b) for a, b in zip((0.955, 0.958, 0.956), (0.93, 0.935, 0.94), strict=True)]
    anyb = got["rival_any_budget"]
    assert (anyb["method"], anyb["verdict"]) == ("lora r5", "beats")
    assert anyb["difference_points"]["estimate"] == pytest.approx(statistics.fmean(diff))
    assert anyb["difference_points"]["high"] == pytest.approx(
        statistics.fmean(diff) + t.ppf(0.975, 2) * statistics.stdev(diff) / 3 ** 0.5)
    assert "16x BN's 320" in anyb["text"]

    worse = _rival_rows({"bn_adapt": ([0.955, 0.956, 0.957], 0), "drift_compensation": ([0.90, 0.91, 0.90], 0)})
    got = {s["kind"]: s for s in statements(worse)}
    assert got["bn_suffices"]["verdict"] == "yes"  # 0.4 [0.15, 0.65] points below software: under 1 point
    edge = _rival_rows({"bn_adapt": ([0.95, 0.951, 0.952], 0)})  # 0.9 [0.65, 1.15]: 1 point inside
    assert statements(edge)[0]["verdict"] == "inconclusive"
    assert got["rival_equal_budget"]["verdict"] == "behind"


def test_rival_statements_table_has_a_line_per_non_ideality_and_size():
    from dnn.report_rivals import statements, statements_table

    rows = _rival_rows({"bn_finetune": ([0.93, 0.935, 0.94], 320), "lora_r5": ([0.955, 0.958, 0.956], 5165)})
    lines = statements_table(statements(rows)).splitlines()
    assert len(lines) == 3 and lines[2].startswith("| s | c | m | 100 | **NO** (bn_finetune: 2.5 [")
    # no rival at equal budget; lora r5 - bn_finetune: 2.5, 2.3, 1.6 points: 2.13 +- t(0.975, 2) 0.473 / sqrt(3)
    assert lines[2].endswith("|  | **beats** (lora r5 − bn_finetune: 2.1 [1.0, 3.3]) |")


def test_rival_statements_with_one_seed_or_unpaired_seeds_are_inconclusive():
    from dnn.report_rivals import statements

    one = {s["kind"]: s for s in statements(_rival_rows({"bn_adapt": ([0.5], 0), "lora_r1": ([0.9], 1033)}))}
    assert one["bn_suffices"]["verdict"] == one["rival_any_budget"]["verdict"] == "inconclusive"
    unpaired = statements(_rival_rows({"bn_adapt": ([0.5, 0.5], 0), "lora_r1": ([0.9, 0.9, 0.9], 1033)}))
    rival = next(s for s in unpaired if s["kind"] == "rival_any_budget")
    assert rival["verdict"] == "inconclusive" and rival["difference_points"] is None
    assert "no paired difference" in rival["text"]


def test_the_workflow_report_states_the_rivals_when_a_result_holds_one(tmp_path):
    """results.md and summary.json carry the rivals' statements for results with a rival method, and
    nothing of them for results without one."""
    from dnn.report import ReportSettings, load_results, markdown_table, summary
    from dnn.results import EvaluationResult, MethodResult

    def entry(per_seed, method, params=0, rank=None):
        return MethodResult(accuracy_mean=sum(per_seed) / len(per_seed), accuracy_std=0.0, accuracies=per_seed,
                            accuracy_per_seed=per_seed, trainable_params=params, wall_s=1.0, peak_mem_mb=1.0,
                            memory_kind="x", method=method, rank=rank, calibration_images=0 if method == "none" else 100)
    methods = {"none": entry([0.1, 0.1, 0.1], "none"), "bn_adapt_n100": entry([0.80, 0.81, 0.80], "bn_adapt"),
               "lora_r1_n100": entry([0.90, 0.92, 0.91], "lora", 1033, 1)}
    path = tmp_path / "r.json"
    EvaluationResult(circuit="c", model="m", scenario="drift", architecture="bn_cnn", model_path="",
                     software_accuracy=0.95, methods=methods).write(path)
    rows = load_results([path])
    md = markdown_table(rows, ReportSettings())
    assert "Light rivals of BN-only mitigation" in md
    assert "- drift / c / m, 100 images: best rival at any budget, lora r1 (1033 trained parameters" in md
    got = summary(rows, ReportSettings())["rival_statements"]
    assert [(s["kind"], s["verdict"]) for s in got] == [("bn_suffices", "NO"), ("rival_any_budget", "beats")]
    del methods["lora_r1_n100"]
    EvaluationResult(circuit="c", model="m", scenario="drift", architecture="bn_cnn", model_path="",
                     software_accuracy=0.95, methods=methods).write(path)
    rows = load_results([path])
    assert "Light rivals" not in markdown_table(rows, ReportSettings())
    assert summary(rows, ReportSettings())["rival_statements"] == []


def test_rivals_accuracy_and_cost_tables():
    from dnn.report_rivals import accuracy_table, cost_table

    rows = _rival_rows({"none": ([0.1, 0.1], 0), "bn_finetune": ([0.90, 0.92], 320), "lora_r5": ([0.95, 0.97], 5165)})
    for r, size, wall, per_chip in zip(rows, (0, 100, 100), (0.0, 2.0, 4.0), (0, 2560, 21940), strict=True):
        r.update(accuracy_std=0.01 * (r["method"] != "none"), calibration_images=size, wall_s=wall,
                 bytes_per_chip=per_chip)
    extra = dict(rows[2], calibration_images=10, wall_s=1.0, accuracy_mean=0.5)
    acc = accuracy_table([*rows, extra]).splitlines()
    assert acc[0] == "| non-ideality | circuit | model | images | bn_finetune | lora r5 |"
    assert acc[2] == "| s | c | m | 10 |  | 50.0 ± 1.0 |"
    assert acc[3] == "| s | c | m | 100 | 91.0 ± 1.0 | 96.0 ± 1.0 |"
    assert acc[-1] == "Software and no mitigation (none): s / c / m 96.0%, none 10.0 ± 0.0%"
    cost = cost_table([*rows, extra]).splitlines()
    assert cost[2] == "| bn_finetune |  | 320 | 1.00 | 2,560 | nan / 2.0 |"
    assert cost[3] == "| lora | 5 | 5,165 | 16.14 | 21,940 | 1.0 / 4.0 |"
