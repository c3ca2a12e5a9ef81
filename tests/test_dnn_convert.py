"""convert_to_crossbar: analog_layers, exclude, overrides, deep copy, custom mapping."""

import pytest
import torch
from torch import nn

from dnn.config import CrossbarConfig
from dnn.convert import convert_to_crossbar, crossbar_layers
from dnn.layers import CrossbarConv2d, CrossbarLinear
from dnn.models import build_model
from dnn.mvm import IdealTileMVM

MVM = IdealTileMVM(32, 16, 5e-6, 50e-6, 0.2)


def _model():
    torch.manual_seed(0)
    return build_model("bn_cnn", 1, 10, 8, width=0.25)


def test_conv_only_by_default_and_deep_copy():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    conv = convert_to_crossbar(model, CrossbarConfig(), MVM)
    xl = crossbar_layers(conv)
    assert sorted(xl) == ["features.0", "features.4", "features.8"]
    assert all(isinstance(m, CrossbarConv2d) for m in xl.values())
    assert isinstance(conv.classifier, nn.Linear)  # classifier stays digital (Paper 1)
    assert isinstance(conv.features[1], nn.BatchNorm2d)
    # the original is untouched (deep copy) and shares no tensors with the converted model
    assert not crossbar_layers(model)
    assert conv.features[1].weight is not model.features[1].weight
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    with torch.no_grad():
        out = conv.eval()(torch.randn(2, 1, 8, 8))
    assert out.shape == (2, 10)


def test_all_layers_exclude_and_inplace():
    model = _model()
    cfg = CrossbarConfig(analog_layers="all", exclude=["features.0"])
    same = convert_to_crossbar(model, cfg, MVM, exclude=["features.8"], inplace=True)
    assert same is model
    assert sorted(crossbar_layers(model)) == ["classifier", "features.4"]
    assert isinstance(model.classifier, CrossbarLinear)
    assert isinstance(model.features[0], nn.Conv2d) and isinstance(model.features[8], nn.Conv2d)


def test_overrides_per_layer():
    cfg = CrossbarConfig()
    conv = convert_to_crossbar(_model(), cfg, MVM, overrides={"features.4": {"weight_bits": 4, "adc_bits": 0}})
    assert conv.features[4].config.weight_bits == 4 and conv.features[4].config.adc_bits == 0
    assert conv.features[0].config == cfg
    with pytest.raises(ValueError, match="unknown CrossbarConfig key"):
        convert_to_crossbar(_model(), cfg, MVM, overrides={"features.4": {"nbits": 4}})
    with pytest.raises(ValueError, match="not converted"):
        convert_to_crossbar(_model(), cfg, MVM, overrides={"classifier": {"weight_bits": 4}})


def test_unknown_names_rejected():
    with pytest.raises(ValueError, match="not modules of the model"):
        convert_to_crossbar(_model(), CrossbarConfig(), MVM, exclude=["features.99"])


def test_custom_mapping_and_layer_names():
    class MyLinear(CrossbarLinear):
        pass

    model = _model()
    conv = convert_to_crossbar(model, CrossbarConfig(analog_layers="all"), MVM, mapping={nn.Linear: MyLinear})
    assert sorted(crossbar_layers(conv)) == ["classifier"]
    assert type(conv.classifier) is MyLinear and conv.classifier.name == "classifier"


def test_converted_resnet_runs():
    torch.manual_seed(0)
    model = build_model("resnet20", 3, 10, 8, width=0.25).eval()
    conv = convert_to_crossbar(model, CrossbarConfig(), MVM).eval()
    n_conv = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert len(crossbar_layers(conv)) == n_conv
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        y, y_float = conv(x), model(x)
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    assert torch.corrcoef(torch.stack([y.flatten(), y_float.flatten()]))[0, 1] > 0.9
