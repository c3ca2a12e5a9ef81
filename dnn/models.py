"""Small model zoo with batch normalization after every conv: BN-CNN, VGG-style, ResNet-style.

All models take [N, in_channels, image_size, image_size] inputs (1x8x8 digits, 1x28x28 MNIST,
3x32x32 CIFAR-10) and end in global average pooling + a linear classifier, so one definition serves
every input size. VGG max-pools are skipped once the feature map is 1x1 (e.g. on 8x8 inputs).
Convs feeding a BN have no bias (BN's beta plays that role).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def _ch(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class BNCNN(nn.Module):
    """Three conv-BN-ReLU blocks (32, 64, 64 channels x width), two 2x2 max-pools, GAP, linear.
    ~56k parameters at width 1 on grey inputs; fast on CPU."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int, width: float = 1.0) -> None:
        super().__init__()
        c1, c2, c3 = _ch(32, width), _ch(64, width), _ch(64, width)
        pool1 = [nn.MaxPool2d(2)] if image_size >= 4 else []
        pool2 = [nn.MaxPool2d(2)] if image_size >= 8 else []
        self.features = nn.Sequential(
            *_conv_bn_relu(in_channels, c1), *pool1,
            *_conv_bn_relu(c1, c2), *pool2,
            *_conv_bn_relu(c2, c3),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.classifier = nn.Linear(c3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


VGG_CFGS: dict[str, list[int | str]] = {
    # VGG8 as used by NeuroSim-style IMC studies: 6 convs + 2 FC layers
    "vgg8": [128, 128, "M", 256, 256, "M", 512, 512, "M"],
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """VGG with BN after every conv; GAP + linear classifier (VGG8: hidden FC of 1024 x width)."""

    def __init__(self, cfg: list[int | str], in_channels: int, num_classes: int, image_size: int,
                 width: float = 1.0, hidden: int = 0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c, size = in_channels, image_size
        for item in cfg:
            if item == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
            else:
                layers += _conv_bn_relu(c, _ch(int(item), width))
                c = _ch(int(item), width)
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        if hidden:
            h = _ch(hidden, width)
            self.classifier = nn.Sequential(nn.Linear(c, h), nn.ReLU(inplace=True), nn.Linear(h, num_classes))
        else:
            self.classifier = nn.Sequential(nn.Linear(c, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """ResNet basic block: conv-BN-ReLU-conv-BN + shortcut (1x1 conv + BN when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet: 3x3 stem (no max-pool), stages of basic blocks, GAP, linear.
    ResNet-20: 16/32/64 x 3 blocks (He et al. 2016, with 1x1-conv shortcuts); ResNet-18: 64..512 x 2."""

    def __init__(self, stage_channels: list[int], blocks_per_stage: int, in_channels: int, num_classes: int,
                 width: float = 1.0) -> None:
        super().__init__()
        chans = [_ch(c, width) for c in stage_channels]
        self.stem = nn.Sequential(*_conv_bn_relu(in_channels, chans[0]))
        stages: list[nn.Module] = []
        c = chans[0]
        for i, c_out in enumerate(chans):
            blocks = [BasicBlock(c if j == 0 else c_out, c_out, (1 if i == 0 else 2) if j == 0 else 1)
                      for j in range(blocks_per_stage)]
            stages.append(nn.Sequential(*blocks))
            c = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.stages(self.stem(x))))


ModelFactory = Callable[[int, int, int, float], nn.Module]

MODELS: dict[str, ModelFactory] = {
    "bn_cnn": lambda c, k, s, w: BNCNN(c, k, s, w),
    "vgg8": lambda c, k, s, w: VGG(VGG_CFGS["vgg8"], c, k, s, w, hidden=1024),
    "vgg11": lambda c, k, s, w: VGG(VGG_CFGS["vgg11"], c, k, s, w),
    "vgg16": lambda c, k, s, w: VGG(VGG_CFGS["vgg16"], c, k, s, w),
    "resnet20": lambda c, k, s, w: ResNet([16, 32, 64], 3, c, k, w),
    "resnet18": lambda c, k, s, w: ResNet([64, 128, 256, 512], 2, c, k, w),
}


def build_model(name: str, in_channels: int, num_classes: int, image_size: int, width: float = 1.0
                ) -> nn.Module:
    """Model by registry name (see `MODELS`); the error lists the valid names."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {sorted(MODELS)}")
    if in_channels < 1 or num_classes < 2 or image_size < 1 or width <= 0:
        raise ValueError(f"build_model({name!r}): need in_channels >= 1, num_classes >= 2, image_size >= 1, "
                         f"width > 0; got {in_channels}, {num_classes}, {image_size}, {width}")
    return MODELS[name](in_channels, num_classes, image_size, width)
