"""``xresnet18``: ResNet-18 in the XNOR-Net block order, for binary inference and training.

Each binarizable conv is preceded by ``BatchNorm -> Hardtanh`` (paper section 3.2: BatchNorm ->
BinActiv -> BinConv; Hardtanh for the reasons in ``xnorlab.models.demo``), so the sign the XNOR
wrapper applies sees a normalized input, where torchvision's ``conv -> BN -> ReLU`` order
feeds every binary conv non-negative values (all signs +1). A basic block computes

    out = conv2(act(bn2(conv1(act(bn1(x)))))) + shortcut(x)

with ``shortcut = conv1x1(act(bn(x)))`` (stride 2) where the shape changes, else identity. The
stem and the classifier (BatchNorm, ReLU, average pool, Linear) are the first and last layers,
which the ``paper`` preset keeps float; convs carry no bias. The stem ends in its BatchNorm,
without a ReLU (as Bi-Real Net's), so the first block's sign sees signed values.

Two sizes (``BINARY_ARCHITECTURES``):

``xresnet18``
    3x224x224 input, 7x7 stride-2 stem conv and 3x3 max pool, stages of 64-512 channels: the
    ResNet-18 shape, for speed figures.
``xresnet18-small``
    1x28x28 input (mnist5k, digits), 3x3 stride-1 stem conv without pooling, stages of
    ``SMALL_WIDTH`` to 8x ``SMALL_WIDTH`` channels (28, 14, 7, 4 pixels): trainable on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

SMALL_WIDTH = 16  # channels of the small variant's first stage (see benchmarks/RESULTS.md)


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


def _stem(in_channels: int, width: int, small_input: bool) -> nn.Sequential:
    """``conv7x7/2 -> BN -> maxpool3x3/2`` (224x224 input) or ``conv3x3 -> BN`` (28x28)."""
    if small_input:
        return nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, padding=1, bias=False), nn.BatchNorm2d(width)
        )
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 7, 2, padding=3, bias=False), nn.BatchNorm2d(width),
        nn.MaxPool2d(3, 2, padding=1),
    )  # fmt: skip


class XResNet18(nn.Module):
    """ResNet-18 (4 stages of 2 basic blocks, ``width`` to 8x ``width`` channels) in the
    XNOR-Net block order; ``small_input``: the 3x3 stem without pooling for 28x28 images."""

    def __init__(
        self, num_classes: int = 1000, *, in_channels: int = 3, width: int = 64,
        small_input: bool = False,
    ) -> None:  # fmt: skip
        super().__init__()
        self.stem = _stem(in_channels, width, small_input)
        blocks: list[nn.Module] = []
        channels_in = width
        for stage, stride in enumerate((1, 2, 2, 2)):
            channels = width * 2**stage
            blocks += [
                XBasicBlock(channels_in, channels, stride),
                XBasicBlock(channels, channels, 1),
            ]
            channels_in = channels
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.BatchNorm2d(channels_in), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.fc = nn.Linear(channels_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.fc(self.head(self.blocks(self.stem(x))))
        return out


def xresnet18(num_classes: int = 1000) -> nn.Module:
    """A randomly initialized :class:`XResNet18` for 3x224x224 images."""
    return XResNet18(num_classes)


def xresnet18_small(num_classes: int = 10) -> nn.Module:
    """A randomly initialized :class:`XResNet18` for 1x28x28 images (``SMALL_WIDTH``)."""
    return XResNet18(num_classes, in_channels=1, width=SMALL_WIDTH, small_input=True)


def build_binary(arch: str, num_classes: int | None = None) -> nn.Module:
    """Binary architecture ``arch`` (a ``BINARY_ARCHITECTURES`` name), random init, with
    ``num_classes`` outputs (None: ImageNet's 1000 for ``xresnet18``, 10 digits for the small
    one)."""
    build = BINARY_ARCHITECTURES[arch]
    return build() if num_classes is None else build(num_classes)


BINARY_ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "xresnet18": xresnet18,
    "xresnet18-small": xresnet18_small,
}
BINARY_INPUT_SHAPES: dict[str, tuple[int, int, int]] = {
    "xresnet18": (3, 224, 224),
    "xresnet18-small": (1, 28, 28),
}
BINARY_DEFAULT_DATA: dict[str, str] = {"xresnet18-small": "mnist5k"}
