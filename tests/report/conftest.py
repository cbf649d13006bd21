"""Small deterministic models and data for the report/export tests."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import pytest
import torch
from torch import nn

from xnorlab.models.demo import build_demo
from xnorlab.models.loaded import LoadedModel


def tiny_net() -> nn.Sequential:
    """conv 1->4 3x3 pad 1 (no bias) -> BN -> Hardtanh -> conv 4->8 3x3 (bias) -> pool ->
    flatten -> linear 8*3*3 -> 5 (bias). Input 1x8x8.
    """
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 4, 3, padding=1, bias=False),
            bn1=nn.BatchNorm2d(4),
            act1=nn.Hardtanh(),
            conv2=nn.Conv2d(4, 8, 3),
            pool=nn.MaxPool2d(2),
            flatten=nn.Flatten(),
            fc=nn.Linear(8 * 3 * 3, 5),
        )
    )


def randomize_batchnorm(model: nn.Module, seed: int = 1) -> None:
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(n, generator=generator) - 0.5)


def make_tiny_loaded() -> LoadedModel:
    """``tiny_net`` with seeded weights and BatchNorm statistics, 5 classes."""
    torch.manual_seed(0)
    model = tiny_net().eval()
    randomize_batchnorm(model)
    names = [f"c{i}" for i in range(5)]
    return LoadedModel(spec="test:tiny", model=model, input_shape=(1, 8, 8), class_names=names)


@pytest.fixture
def tiny_loaded() -> LoadedModel:
    return make_tiny_loaded()


@pytest.fixture(scope="session")
def tiny_factory() -> Callable[[], LoadedModel]:
    """``make_tiny_loaded`` for module-scoped fixtures."""
    return make_tiny_loaded


def demo_loaded(arch: str, seed: int = 0) -> LoadedModel:
    """A demo net with seeded random weights and BatchNorm statistics."""
    torch.manual_seed(seed)
    model = build_demo(arch).eval()
    randomize_batchnorm(model, seed + 1)
    shape = (1, 28, 28) if arch == "lenet" else (3, 32, 32)
    names = [str(i) for i in range(10)]
    return LoadedModel(
        spec=f"demo:{arch}", model=model, input_shape=shape, class_names=names, arch=arch
    )


@pytest.fixture
def make_demo() -> Callable[..., LoadedModel]:
    """The ``demo_loaded`` factory (test modules here are not a package)."""
    return demo_loaded


@pytest.fixture
def lenet_loaded() -> LoadedModel:
    return demo_loaded("lenet")
