"""Demo architectures in the XNOR-Net block order, usable in float, BWN and XNOR mode.

Every binarizable block is ``BatchNorm -> Hardtanh -> Conv/Linear -> Pool`` (paper section 3.2:
BatchNorm -> BinActiv -> BinConv -> Pool). The first conv and the classifier stay float in the
``paper`` presets (they are plain ``nn.Conv2d`` / ``nn.Linear``; ``binarize_model`` wraps them).

Why ``Hardtanh`` between BatchNorm and the conv
-----------------------------------------------
The same network must also train in FLOAT mode. Without a nonlinearity between two convs a float
net is (nearly) linear; in XNOR mode the ``sign`` applied by the layer wrapper is the
nonlinearity. ``Hardtanh`` (clip to ``[-1, 1]``) is chosen because

* it keeps the sign of every value (``sign(hardtanh(x)) == sign(x)``, 0 maps to +1 either way),
  so the next binary layer sees exactly the bits it would see without it;
* its gradient ``1{|x| <= 1}`` is the straight-through estimator of ``sign`` with clip 1, so the
  float and the binary nets are trained with the same gradient gate (as in BinaryNet);
* a ReLU would zero every negative value, which ``sign`` maps to +1: half the information of
  the next binary layer would be lost (binarization guide, "Blocks and defaults").

The K map of an XNOR layer is computed from ``|Hardtanh(BN(x))|``, i.e. magnitudes clipped to 1.
Convs followed by BatchNorm carry no bias (BatchNorm's shift replaces it).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from torch import nn

from xnorlab.common.errors import XnorlabError


def _bin_block(
    index: int, channels_in: int, channels_out: int, kernel: int, padding: int
) -> list[tuple[str, nn.Module]]:
    """``bn{i} -> act{i} -> conv{i}`` (no bias): the unit that a mode map binarizes."""
    return [
        (f"bn{index}", nn.BatchNorm2d(channels_in)),
        (f"act{index}", nn.Hardtanh()),
        (f"conv{index}", nn.Conv2d(channels_in, channels_out, kernel, padding=padding, bias=False)),
    ]


class LeNet(nn.Sequential):
    """LeNet-5-style net for ``1 x 28 x 28`` digits.

    ``conv1`` 1->32 5x5 (float) -> ``pool1`` -> [``bn2`` -> ``act2`` -> ``conv2`` 32->64 5x5]
    -> ``pool2`` -> ``flatten`` (64*4*4) -> [``bn3`` -> ``act3`` -> ``fc3`` 1024->hidden] ->
    [``bn4`` -> ``act4`` -> ``fc4`` hidden->classes] (float). No padding anywhere, so zero and
    one padding of binary inputs give the same result.
    """

    input_shape = (1, 28, 28)

    def __init__(self, num_classes: int = 10, hidden: int = 512) -> None:
        layers: list[tuple[str, nn.Module]] = [
            ("conv1", nn.Conv2d(1, 32, 5, bias=False)),  # first layer: float
            ("pool1", nn.MaxPool2d(2)),
            *_bin_block(2, 32, 64, 5, padding=0),
            ("pool2", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()),
            ("bn3", nn.BatchNorm1d(64 * 4 * 4)),
            ("act3", nn.Hardtanh()),
            ("fc3", nn.Linear(64 * 4 * 4, hidden, bias=False)),
            ("bn4", nn.BatchNorm1d(hidden)),
            ("act4", nn.Hardtanh()),
            ("fc4", nn.Linear(hidden, num_classes)),  # last layer: float
        ]
        super().__init__(OrderedDict(layers))


class SmallVGG(nn.Sequential):
    """VGG/NIN-style net for ``3 x 32 x 32`` colour images (~1.15M parameters).

    ``conv1`` 3->64 3x3 (float) -> [BN-Hardtanh-``conv2`` 64->64] -> ``pool2`` (16x16) ->
    ``conv3`` 64->128 -> ``conv4`` 128->128 -> ``pool4`` (8x8) -> ``conv5`` 128->256 ->
    ``conv6`` 256->256 -> ``pool6`` (4x4) -> ``bn7`` -> ``act7`` -> global average pool ->
    ``fc7`` 256->classes (float). Binary convs are 3x3 with padding 1, so the padding mode
    (zero/one) matters in this net.
    """

    input_shape = (3, 32, 32)

    def __init__(self, num_classes: int = 10) -> None:
        layers: list[tuple[str, nn.Module]] = [
            ("conv1", nn.Conv2d(3, 64, 3, padding=1, bias=False)),  # first layer: float
            *_bin_block(2, 64, 64, 3, padding=1),
            ("pool2", nn.MaxPool2d(2)),
            *_bin_block(3, 64, 128, 3, padding=1),
            *_bin_block(4, 128, 128, 3, padding=1),
            ("pool4", nn.MaxPool2d(2)),
            *_bin_block(5, 128, 256, 3, padding=1),
            *_bin_block(6, 256, 256, 3, padding=1),
            ("pool6", nn.MaxPool2d(2)),
            ("bn7", nn.BatchNorm2d(256)),
            ("act7", nn.Hardtanh()),
            ("gap", nn.AdaptiveAvgPool2d(1)),
            ("flatten", nn.Flatten()),
            ("fc7", nn.Linear(256, num_classes)),  # last layer: float
        ]
        super().__init__(OrderedDict(layers))


ARCHITECTURES: dict[str, Callable[[int], nn.Module]] = {"lenet": LeNet, "vgg": SmallVGG}
INPUT_SHAPES: dict[str, tuple[int, int, int]] = {"lenet": (1, 28, 28), "vgg": (3, 32, 32)}
DEFAULT_DATA: dict[str, str] = {"lenet": "mnist5k", "vgg": "cifar10"}


def build_demo(arch: str, num_classes: int = 10) -> nn.Module:
    """Build demo architecture ``arch`` (``lenet`` or ``vgg``) with random weights."""
    key = arch.strip().lower()
    if key not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise XnorlabError(f"unknown demo architecture {arch!r} (known: {known})")
    if num_classes < 2:
        raise XnorlabError(f"a classifier needs at least 2 classes, got {num_classes}")
    return ARCHITECTURES[key](num_classes)
