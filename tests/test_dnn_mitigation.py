"""BN adaptation, BN fine-tuning and retraining through converted (non-ideal) models."""

import logging

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from dnn.config import CrossbarConfig
from dnn.convert import convert_to_crossbar
from dnn.mitigation import (
    apply_method,
    batchnorm_layers,
    bn_adapt,
    bn_finetune,
    bn_parameters,
    measure_cost,
    retrain,
    trainable_parameter_count,
)
from dnn.models import build_model
from dnn.mvm import TransferTileMVM
from dnn.train import make_loader

NOISY = CrossbarConfig(read_noise_sigma=0.1, adc_range_fraction=0.5, seed=1)
# a lossy array: every column current scaled to 50 % (a per-column gain BN can absorb)
LOSSY = TransferTileMVM(32, 16, 5e-6, 50e-6, 0.2, transfer_fn=lambda g: 0.5 * g)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return TensorDataset(x, y)


def _converted(cfg=NOISY, mvm=LOSSY):
    torch.manual_seed(0)
    model = build_model("bn_cnn", 1, 10, 8, width=0.25)
    # non-trivial BN statistics/affine parameters, as after training
    for bn in batchnorm_layers(model):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        nn.init.uniform_(bn.weight, 0.5, 1.5)
        nn.init.uniform_(bn.bias, -0.2, 0.2)
    return convert_to_crossbar(model, cfg, mvm)


def _bn_names(model):
    names = set()
    for mod_name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            names |= {f"{mod_name}.{k}" for k in m.state_dict()}
    return names


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_gradients_reach_bn_affine_through_converted_model():
    model = _converted()
    params = bn_parameters(model)
    for p in params:
        p.requires_grad_(True)
    x, y = _data(8).tensors
    model.train()
    nn.functional.cross_entropy(model(x), y).backward()
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert all(p.grad.abs().sum() > 0 for p in params)


def test_bn_finetune_changes_only_bn_parameters_and_statistics():
    model = _converted()
    before = _snapshot(model)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    bn_ids = {id(p) for p in bn_parameters(model)}
    seen = []  # which parameters require grad while fine-tuning runs
    hook = model.features[4].register_forward_hook(
        lambda *_: seen.append({id(p) for p in model.parameters() if p.requires_grad}))
    bn_finetune(model, make_loader(_data(), 32, shuffle=True), epochs=2, lr=0.05, progress=False)
    hook.remove()
    assert seen and all(s == bn_ids for s in seen)
    after = _snapshot(model)
    bn_keys = _bn_names(model)
    assert bn_keys and set(before) == set(after)
    for k in before:
        if k in bn_keys:
            continue
        assert torch.equal(before[k], after[k]), f"{k} changed"
    changed = [k for k in bn_keys if not torch.equal(before[k], after[k])]
    assert any(k.endswith(".weight") for k in changed) and any(k.endswith(".running_mean") for k in changed)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags  # flags restored
    assert not model.training


@pytest.mark.parametrize("method", ["bn_finetune", "adapt_finetune"])
def test_finetune_methods_with_reestimate_change_only_bn_state(method):
    model = _converted()
    before = _snapshot(model)
    apply_method(method, model, make_loader(_data(), 32, shuffle=True),
                 finetune={"epochs": 1, "lr": 0.05, "progress": False}, adapt={"n_draws": 2})
    after = _snapshot(model)
    bn_keys = _bn_names(model)
    assert [k for k in before if k not in bn_keys and not torch.equal(before[k], after[k])] == []
    assert any(not torch.equal(before[k], after[k]) for k in bn_keys if k.endswith(".running_var"))


def test_bn_finetune_is_seeded():
    a, b = _converted(), _converted()
    for m in (a, b):
        bn_finetune(m, make_loader(_data(), 32, shuffle=True), epochs=1, seed=5, progress=False)
    for (ka, va), (_, vb) in zip(_snapshot(a).items(), _snapshot(b).items(), strict=True):
        assert torch.equal(va, vb), ka


def test_bn_adapt_recomputes_statistics_only():
    model = _converted(cfg=CrossbarConfig(seed=1))  # deterministic forward: exact reference possible
    before = _snapshot(model)
    data = _data()
    bn_adapt(model, make_loader(data, 32), n_batches=2, n_draws=2)
    after = _snapshot(model)
    bn_keys = _bn_names(model)
    for k in before:
        if k in bn_keys and ("running" in k or "num_batches" in k):
            continue
        assert torch.equal(before[k], after[k]), f"{k} changed"
    first_bn = model.features[1]
    assert first_bn.momentum == 0.1  # momentum restored
    assert first_bn.num_batches_tracked.item() == 2  # no read noise: one pass, n_draws repeats nothing
    # reference: the statistics of the first conv's output over the two batches used (cumulative mean)
    with torch.no_grad():
        z = model.features[0](data.tensors[0][:64])
    mean_ref = torch.stack([z[:32].mean((0, 2, 3)), z[32:].mean((0, 2, 3))]).mean(0)
    assert torch.allclose(first_bn.running_mean, mean_ref, rtol=1e-4, atol=1e-6)
    assert not model.training


def test_bn_adapt_repeats_passes_only_over_random_reads():
    data = _data()
    noisy = _converted()
    bn_adapt(noisy, make_loader(data, 32), n_batches=2, n_draws=3)
    assert noisy.features[1].num_batches_tracked.item() == 6  # every pass new read-noise draws
    quiet = _converted(cfg=CrossbarConfig(seed=1))
    bn_adapt(quiet, make_loader(data, 32), n_batches=2, n_draws=3)
    assert quiet.features[1].num_batches_tracked.item() == 2


def test_bn_adapt_recovers_a_column_gain():
    """A 50 % column-current loss is a gain BN adaptation undoes: outputs match the ideal model's
    BN-adapted outputs."""
    ideal = TransferTileMVM(32, 16, 5e-6, 50e-6, 0.2, transfer_fn=lambda g: g)
    cfg = CrossbarConfig(input_bits=0, adc_bits=0)
    lossy, ref = _converted(cfg, LOSSY), _converted(cfg, ideal)
    loader = make_loader(_data(), 32)
    x = _data(16, seed=9).tensors[0]
    with torch.no_grad():
        far = (lossy.eval()(x) - ref.eval()(x)).abs().max()
        bn_adapt(lossy, loader)
        bn_adapt(ref, loader)
        near = (lossy(x) - ref(x)).abs().max()
    assert near < 0.05 * far


def test_retrain_changes_crossbar_weights():
    model = _converted()
    before = _snapshot(model)
    n_trainable = trainable_parameter_count(model)
    assert n_trainable < sum(p.numel() for p in model.parameters())  # crossbar weights start frozen
    retrain(model, make_loader(_data(), 32, shuffle=True), epochs=1, lr=1e-2, progress=False)
    after = _snapshot(model)
    assert not torch.equal(before["features.4.weight"], after["features.4.weight"])
    assert trainable_parameter_count(model) == n_trainable  # requires_grad flags restored


def test_apply_method_and_cost_accounting():
    model = _converted()
    loader = make_loader(_data(), 32)
    _, cost, n_trained = apply_method("bn_finetune", model, loader, finetune={"epochs": 1, "progress": False})
    assert n_trained == sum(p.numel() for p in bn_parameters(model)) > 0
    assert cost.memory_kind == "cpu_process_max_rss"
    assert cost.to_dict()["trained_parameters"] == n_trained
    _, _, n_all = apply_method("none", model, loader)
    assert n_all == 0
    _, _, n_adapt = apply_method("bn_adapt", model, loader)
    assert n_adapt == 0
    _, _, n_retrain = apply_method("retrain", model, loader, epochs=1, max_batches=1, progress=False)
    assert n_retrain == sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match="valid"):
        apply_method("prune", model, loader)


def _vm_hwm_bytes():
    """The process's peak resident set size as the kernel reports it (independent of getrusage)."""
    with open("/proc/self/status") as fh:
        line = next(x for x in fh if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_measure_cost_reports_wall_time_and_the_process_peak_memory():
    import time

    low = _vm_hwm_bytes()
    with measure_cost("cpu") as c:
        time.sleep(0.05)
        block = bytearray(64 * 2**20)  # 64 MiB, touched
        block[::4096] = b"x" * len(block[::4096])
    high = _vm_hwm_bytes()
    del block
    assert c.device == "cpu" and c.memory_kind == "cpu_process_max_rss"
    assert 0.05 <= c.wall_s < 30
    assert low <= c.peak_memory_bytes <= high and c.peak_memory_bytes >= 64 * 2**20
    d = c.to_dict()
    assert d == {"device": "cpu", "wall_s": c.wall_s, "peak_memory_bytes": c.peak_memory_bytes,
                 "memory_kind": "cpu_process_max_rss"}


def _bn_modules_by_type(model):
    """Independent of dnn.mitigation: every BatchNorm module, found by its concrete class."""
    return {name: m for name, m in model.named_modules()
            if type(m) in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)}


def test_bn_finetune_moves_gamma_and_beta_of_every_bn_and_no_other_parameter():
    model = _converted()
    bns = _bn_modules_by_type(model)
    assert len(bns) >= 2
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    bn_finetune(model, make_loader(_data(), 32, shuffle=True), epochs=1, lr=0.05, progress=False)
    after = dict(model.named_parameters())
    expected = {f"{name}.{k}" for name in bns for k in ("weight", "bias")}
    changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert changed == expected  # gamma AND beta of every BN, nothing else


def test_trained_parameter_count_is_gamma_plus_beta():
    model = _converted()
    expected = sum(2 * m.num_features for m in _bn_modules_by_type(model).values())
    _, _, n_trained = apply_method("bn_finetune", model, make_loader(_data(), 32),
                                   finetune={"epochs": 1, "max_batches": 1, "progress": False})
    assert n_trained == expected


# ----------------------------------------------------------------------------- what each method hands on
class _Spy:
    """Records the calls of a replaced procedure; returns the model unchanged."""

    def __init__(self):
        self.calls = []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return args[0] if args else None


@pytest.fixture
def spies(monkeypatch):
    import dnn.mitigation as mit

    s = {name: _Spy() for name in ("bn_adapt", "bn_finetune", "retrain")}
    for name, spy in s.items():
        monkeypatch.setattr(mit, name, spy)
    return s


def test_apply_method_hands_device_seed_and_settings_to_each_procedure(spies):
    model, loader = _converted(), make_loader(_data(), 32)
    apply_method("bn_adapt", model, loader, device="cpu", n_batches=3, n_draws=2)
    assert spies["bn_adapt"].calls == [((model, loader), {"device": "cpu", "n_batches": 3, "n_draws": 2})]
    spies["bn_adapt"].calls.clear()

    apply_method("bn_finetune", model, loader, device="cpu", seed=7, finetune={"epochs": 3, "lr": 0.5},
                 adapt={"n_draws": 4})
    assert spies["bn_finetune"].calls == [((model, loader), {"device": "cpu", "seed": 7, "epochs": 3, "lr": 0.5})]
    assert spies["bn_adapt"].calls == [((model, loader), {"device": "cpu", "n_draws": 4})]
    for s in spies.values():
        s.calls.clear()

    apply_method("bn_finetune", model, loader, device="cpu", finetune={"reestimate_stats": False})
    assert spies["bn_finetune"].calls == [((model, loader), {"device": "cpu", "seed": 0})]
    assert spies["bn_adapt"].calls == []  # no re-estimate when told so
    spies["bn_finetune"].calls.clear()

    apply_method("bn_finetune", model, loader, device="cpu")  # defaults: re-estimate, adapt defaults
    assert spies["bn_finetune"].calls == [((model, loader), {"device": "cpu", "seed": 0})]
    assert spies["bn_adapt"].calls == [((model, loader), {"device": "cpu"})]
    for s in spies.values():
        s.calls.clear()

    apply_method("adapt_finetune", model, loader, device="cpu", seed=3, finetune={"epochs": 2},
                 adapt={"n_batches": 1})
    assert spies["bn_adapt"].calls == [((model, loader), {"device": "cpu", "n_batches": 1})] * 2
    assert spies["bn_finetune"].calls == [((model, loader), {"device": "cpu", "seed": 3, "epochs": 2})]
    for s in spies.values():
        s.calls.clear()

    apply_method("adapt_finetune", model, loader, device="cpu")
    assert spies["bn_adapt"].calls == [((model, loader), {"device": "cpu"})] * 2
    for s in spies.values():
        s.calls.clear()

    apply_method("retrain", model, loader, device="cpu", seed=5, epochs=2, lr=0.1, adapt={"n_draws": 3})
    assert spies["retrain"].calls == [((model, loader), {"device": "cpu", "seed": 5, "epochs": 2, "lr": 0.1})]
    assert spies["bn_adapt"].calls == [((model, loader), {"device": "cpu", "n_draws": 3})]
    for s in spies.values():
        s.calls.clear()

    apply_method("retrain", model, loader, device="cpu")
    assert spies["retrain"].calls == [((model, loader), {"device": "cpu", "seed": 0})]
    assert spies["bn_adapt"].calls == [((model, loader), {"device": "cpu"})]
    for s in spies.values():
        s.calls.clear()

    apply_method("none", model, loader, device="cpu")
    assert all(not s.calls for s in spies.values())


def test_apply_method_counts_and_logs_what_it_trains(spies, caplog):
    model, loader = _converted(), make_loader(_data(), 32)
    n_bn = sum(2 * m.num_features for m in _bn_modules_by_type(model).values())
    n_all = sum(p.numel() for p in model.parameters())
    expected = {"none": 0, "bn_adapt": 0, "bn_finetune": n_bn, "adapt_finetune": n_bn, "retrain": n_all}
    for method, n in expected.items():
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="dnn.mitigation"):
            returned, cost, n_trained = apply_method(method, model, loader, device="cpu")
        assert returned is model and n_trained == n and cost.extra == {"trained_parameters": n}
        assert cost.device == "cpu"
        messages = [r.getMessage() for r in caplog.records if r.name == "dnn.mitigation"]
        assert len(messages) == 1 and messages[0].startswith(f"{method}: ")
        assert f"{n} trained parameters" in messages[0] and "(cpu_process_max_rss)" in messages[0]
        assert f"peak memory {cost.peak_memory_bytes / 2**20:.1f} MiB " in messages[0]


def test_procedures_hand_their_settings_to_the_training_loop(monkeypatch):
    import dnn.mitigation as mit

    fits = []

    def fake_fit(model, loader, params, epochs, lr, **kw):
        fits.append({"params": {id(p) for p in params}, "trainable": {id(p) for p in model.parameters()
                                                                      if p.requires_grad},
                     "epochs": epochs, "lr": lr, **kw})

    monkeypatch.setattr(mit, "fit", fake_fit)
    model, loader = _converted(), make_loader(_data(), 32)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    bn_ids = {id(p) for m in _bn_modules_by_type(model).values() for p in (m.weight, m.bias)}
    out = bn_finetune(model, loader, epochs=3, lr=0.02, lr_step_epochs=1, lr_gamma=0.5, device="cpu", seed=4,
                      optimizer="sgd", momentum=0.8, max_batches=2, progress=False)
    assert out is model and not model.training
    f = fits.pop()
    assert f["params"] == bn_ids and f["trainable"] == bn_ids
    assert f["set_mode"] is mit._bn_train_rest_eval and f["desc"] == "bn_finetune"
    assert {k: f[k] for k in ("epochs", "lr", "lr_step_epochs", "lr_gamma", "device", "seed", "optimizer",
                              "momentum", "max_batches", "progress")} == {
        "epochs": 3, "lr": 0.02, "lr_step_epochs": 1, "lr_gamma": 0.5, "device": "cpu", "seed": 4,
        "optimizer": "sgd", "momentum": 0.8, "max_batches": 2, "progress": False}
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags

    bn_finetune(model, loader)  # Paper 1's schedule by default
    f = fits.pop()
    assert {k: f[k] for k in ("epochs", "lr", "lr_step_epochs", "lr_gamma", "device", "seed", "optimizer",
                              "momentum", "max_batches", "progress")} == {
        "epochs": 5, "lr": 0.01, "lr_step_epochs": 2, "lr_gamma": 0.2, "device": None, "seed": 0,
        "optimizer": "adam", "momentum": 0.9, "max_batches": None, "progress": True}

    all_ids = {id(p) for p in model.parameters()}
    model.train()
    out = retrain(model, loader, epochs=2, lr=0.3, device="cpu", seed=9, optimizer="sgd", max_batches=1,
                  progress=False)
    assert out is model and not model.training
    f = fits.pop()
    assert f["params"] == all_ids and f["trainable"] == all_ids and f["desc"] == "retrain"
    assert {k: f[k] for k in ("epochs", "lr", "device", "seed", "optimizer", "max_batches", "progress")} == {
        "epochs": 2, "lr": 0.3, "device": "cpu", "seed": 9, "optimizer": "sgd", "max_batches": 1,
        "progress": False}
    assert "set_mode" not in f  # retraining: the whole model in train mode
    retrain(model, loader)
    f = fits.pop()
    assert {k: f[k] for k in ("epochs", "lr", "device", "seed", "optimizer", "max_batches", "progress")} == {
        "epochs": 2, "lr": 1e-3, "device": None, "seed": 0, "optimizer": "adam", "max_batches": None,
        "progress": True}  # the defaults of dnn.settings.Retrain, as the workflow's
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags


def test_bn_train_rest_eval_and_a_model_without_bn():
    import dnn.mitigation as mit

    model = _converted()
    model.eval()
    mit._bn_train_rest_eval(model)
    bns = set(_bn_modules_by_type(model).values())
    assert bns and all(m.training == (m in bns) for m in model.modules())
    plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(ValueError, match="^bn_finetune: the model has no affine BatchNorm parameters$"):
        bn_finetune(plain, make_loader(_data(), 32))
    plain.train()
    assert bn_adapt(plain, make_loader(_data(), 32)) is plain and not plain.training
