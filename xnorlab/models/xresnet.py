"""``xresnet18``: ResNet-18 in the XNOR-Net block order, for binary inference and training.

Each binarizable conv is preceded by ``BatchNorm -> Hardtanh`` (paper section 3.2: BatchNorm ->
BinActiv -> BinConv; Hardtanh for the reasons in ``xnorlab.models.demo``), so the sign the XNOR
wrapper applies sees a normalized input, where torchvision's ``conv -> BN -> ReLU`` order
feeds every binary conv non-negative values (all signs +1). A basic block computes

    out = conv2(act(bn2(conv1(act(bn1(x)))))) + shortcut(x)

with ``shortcut = conv1x1(act(bn(x)))`` (stride 2) where the shape changes, else identity. The
stem (7x7 conv, BN, ReLU, max pool) and the classifier (average pool, Linear) are the first
and last layers, which the ``paper`` preset keeps float; convs carry no bias.
"""

from __future__ import annotations

from torch import Tensor, nn


def _binary_input(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.Hardtanh()]


class XBasicBlock(nn.Module):
    """Two 3x3 convs, each after BatchNorm -> Hardtanh, plus the shortcut."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.pre1 = nn.Sequential(*_binary_input(in_channels))
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, padding=1, bias=False)
        self.pre2 = nn.Sequential(*_binary_input(channels))
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, padding=1, bias=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                *_binary_input(in_channels), nn.Conv2d(in_channels, channels, 1, stride, bias=False)
            )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.conv2(self.pre2(self.conv1(self.pre1(x))))
        shortcut: Tensor = self.shortcut(x)
        return out + shortcut


class XResNet18(nn.Module):
    """ResNet-18 (4 stages of 2 basic blocks, 64-512 channels) in the XNOR-Net block order."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, padding=3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
            nn.MaxPool2d(3, 2, padding=1),
        )  # fmt: skip
        blocks: list[nn.Module] = []
        in_channels = 64
        for channels, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [
                XBasicBlock(in_channels, channels, stride),
                XBasicBlock(channels, channels, 1),
            ]
            in_channels = channels
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.BatchNorm2d(512), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.fc(self.head(self.blocks(self.stem(x))))
        return out


def xresnet18(num_classes: int = 1000) -> nn.Module:
    """A randomly initialized :class:`XResNet18`."""
    return XResNet18(num_classes)


BINARY_ARCHITECTURES = {"xresnet18": xresnet18}
