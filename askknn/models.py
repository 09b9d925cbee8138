"""Models built by name (`create_model("vgg16_bn")`), each exposing five named blocks.

Every model is a `BlockNet`: `blocks` holds conv1..conv5 in order and `head` maps the last block
to logits. `features(x, layers)` runs the blocks only as deep as the deepest requested layer, so
attacks on conv3/conv4 never pay for the rest of the network.

Models are built in the channels_last memory format, on every device: the convolutions (oneDNN on
the CPU, cuDNN on the GPU) and max pooling then skip layout conversions. On 2 CPU cores at batch 128
(reports/layout_speed.md, benchmarks/layout_speed.py, 2026-12-07) an attack step to conv4 ran 1.45x
faster on small_cnn and 1.29x on vgg16_bn at width 0.25, a training step 1.52x and 1.38x. Block
outputs are flattened in the usual (C, H, W) order whatever the layout, so feature vectors mean the same.
"""
from __future__ import annotations

import inspect
from typing import Callable

import torch
from torch import nn

from askknn.shared import LAYERS, ParamError

_REGISTRY: dict[str, Callable[..., "BlockNet"]] = {}


def register_model(fn: Callable[..., "BlockNet"]) -> Callable[..., "BlockNet"]:
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def scalable_models() -> list[str]:
    """The models whose channel counts `width` scales."""
    return [m for m in list_models() if "width" in inspect.signature(_REGISTRY[m]).parameters]


def create_model(name: str, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> "BlockNet":
    """The registered model `name`; `width` scales every channel count (1: the published network)."""
    if name not in _REGISTRY:
        raise ParamError(f"model.name = {name!r} is unknown; choose one of: {', '.join(list_models())}")
    if not width > 0:
        raise ParamError(f"model.width = {width} must be positive")
    if name in scalable_models():
        model = _REGISTRY[name](num_classes=num_classes, in_channels=in_channels, width=width)
    elif width != 1:
        raise ParamError(f"model {name!r} has no width option; set model.width: 1 or use one of: "
                         f"{', '.join(scalable_models())}")
    else:
        model = _REGISTRY[name](num_classes=num_classes, in_channels=in_channels)
    return model.to(memory_format=torch.channels_last)


class BlockNet(nn.Module):
    def __init__(self, blocks: list[nn.Module], head: nn.Module):
        super().__init__()
        self.blocks = nn.ModuleDict(zip(LAYERS, blocks))
        self.head = head

    def check_layers(self, layers) -> None:
        for layer in layers:
            if layer not in self.blocks:
                raise ParamError(f"layer {layer!r} does not exist; this model has: {', '.join(self.blocks)}")

    def features(self, x: torch.Tensor, layers) -> dict[str, torch.Tensor]:
        """Flattened outputs of the requested blocks, stopping at the deepest one."""
        return self(x, layers, head=False)

    def forward_with_features(self, x: torch.Tensor, layers) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and the requested block outputs from one pass."""
        return self(x, layers)

    def forward(self, x: torch.Tensor, layers=None, head: bool = True):
        """Logits; with `layers`, (logits, flattened block outputs) from one pass; with head=False only
        the block outputs, stopping at the deepest requested block. One entry point for all three, so
        that a pass whose gradient trains the model can go through DistributedDataParallel's forward,
        which alone synchronises gradients (features() on the wrapped module would bypass it)."""
        if not head:
            self.check_layers(layers)
        wanted, out = set(layers or ()), {}
        for name, block in self.blocks.items():
            x = block(x)
            if name in wanted:
                out[name] = x.flatten(1)
                if not head and len(out) == len(wanted):
                    return out
        if not head:
            return out
        return self.head(x) if layers is None else (self.head(x), out)


def conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def vgg_block(widths: list[int], cin: int, pool: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for cout in widths:
        layers += conv_bn_relu(cin, cout)
        cin = cout
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


@register_model
def small_cnn(num_classes: int = 10, in_channels: int = 1) -> BlockNet:
    """Five-block CNN for 28x28 inputs (the CPU preset): conv3 = 64x7x7, conv4 = 64x3x3."""
    blocks = [
        vgg_block([16], in_channels),            # 16x14x14
        vgg_block([32], 16),                     # 32x7x7
        vgg_block([64], 32, pool=False),         # 64x7x7
        vgg_block([64], 64),                     # 64x3x3
        nn.Sequential(*conv_bn_relu(64, 128), nn.AdaptiveAvgPool2d(1)),  # 128x1x1
    ]
    return BlockNet(blocks, nn.Sequential(nn.Flatten(), nn.Linear(128, num_classes)))


@register_model
def vgg16_bn(num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> BlockNet:
    """CIFAR-style VGG16-BN as in the ASK paper: conv3 = 256x4x4, conv4 = 512x2x2 at 32x32 input.
    `width` scales every channel count and the head (0.25: 16-32-64-128-128 channels); the layer
    structure and the conv1..conv5 taps stay the paper's."""
    cfg = [[round(c * width) for c in block]
           for block in [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]]
    blocks, cin = [], in_channels
    for widths in cfg:
        blocks.append(vgg_block(widths, cin))
        cin = widths[-1]
    hidden = round(512 * width)
    head = nn.Sequential(
        nn.Flatten(), nn.Dropout(), nn.Linear(cin, hidden), nn.ReLU(inplace=True),
        nn.Dropout(), nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))
    return BlockNet(blocks, head)


@register_model
def resnet18(num_classes: int = 10, in_channels: int = 3) -> BlockNet:
    """timm's ResNet18 with the ImageNet stem; conv1 = stem + layer1, conv2..conv4 = layer2..layer4,
    conv5 = global average pool (at 128x128: conv3 = 256x8x8, conv4 = 512x4x4)."""
    import timm

    net = timm.create_model("resnet18", pretrained=False, num_classes=num_classes, in_chans=in_channels)
    blocks = [
        nn.Sequential(net.conv1, net.bn1, net.act1, net.maxpool, net.layer1),
        net.layer2, net.layer3, net.layer4,
        nn.AdaptiveAvgPool2d(1),
    ]
    return BlockNet(blocks, nn.Sequential(nn.Flatten(), net.fc))
