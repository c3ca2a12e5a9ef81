"""Model registry: every model runs on every supported input shape."""

import pytest
import torch

from dnn.models import MODELS, build_model


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("shape", [(1, 8), (1, 28), (3, 32)])
def test_models_forward_all_input_shapes(name, shape):
    c, s = shape
    torch.manual_seed(0)
    model = build_model(name, c, 10, s, width=0.125).eval()
    with torch.no_grad():
        out = model(torch.randn(2, c, s, s))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_default_bn_cnn_is_small():
    n = sum(p.numel() for p in build_model("bn_cnn", 1, 10, 28).parameters())
    assert 30_000 < n < 80_000


def test_width_and_depth():
    def n_params(name, **kw):
        return sum(p.numel() for p in build_model(name, 3, 10, 32, **kw).parameters())

    assert n_params("vgg16", width=0.5) < n_params("vgg16")
    n_conv = {k: sum(isinstance(m, torch.nn.Conv2d) for m in build_model(k, 3, 10, 32, width=0.125).modules())
              for k in ("vgg8", "vgg11", "vgg16", "resnet20", "resnet18")}
    # resnet: shortcut 1x1 convs counted too (2 for resnet20, 3 for resnet18)
    assert n_conv == {"vgg8": 6, "vgg11": 8, "vgg16": 13, "resnet20": 21, "resnet18": 20}


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="valid names: \\['bn_cnn'"):
        build_model("alexnet", 3, 10, 32)
