"""The ensemble as a model: mean-softmax forward, per-member presets, checkpoint round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from xnorlab.binary.modes import Mode
from xnorlab.binary.surgery import binarize_model, current_modes, list_layers
from xnorlab.common.errors import XnorlabError
from xnorlab.models.checkpoint import layer_settings, save_checkpoint
from xnorlab.models.ensemble import (
    BinaryEnsemble,
    ensemble_arch,
    ensemble_card,
    ensemble_info,
    parse_ensemble_arch,
)
from xnorlab.models.spec import load_model_spec
from xnorlab.models.zoo import build_arch


def _fixed(logits: list[float]) -> nn.Module:
    """A Linear that ignores its input and returns ``logits`` (bias only)."""
    layer = nn.Linear(1, len(logits))
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.copy_(torch.tensor(logits))
    return layer


def test_forward_is_log_of_mean_softmax() -> None:
    a, b = [2.0, 0.0, 0.0], [0.0, 1.0, 3.0]
    ensemble = BinaryEnsemble([_fixed(a), _fixed(b)])
    out = ensemble(torch.zeros(4, 1))
    mean = (torch.softmax(torch.tensor(a), 0) + torch.softmax(torch.tensor(b), 0)) / 2
    assert out.shape == (4, 3)
    torch.testing.assert_close(out.exp(), mean.expand(4, 3))


def test_first_shares_the_members() -> None:
    members = [_fixed([1.0, 0.0]), _fixed([0.0, 1.0]), _fixed([0.0, 2.0])]
    ensemble = BinaryEnsemble(members)
    head = ensemble.first(2)
    assert len(head.members) == 2 and head.members[1] is members[1]
    with pytest.raises(XnorlabError):
        ensemble.first(4)


def test_member_count_is_bounded() -> None:
    with pytest.raises(XnorlabError):
        BinaryEnsemble([])


@pytest.mark.parametrize(
    ("name", "parsed"),
    [("lenet", None), ("ensemble-lenet-4", ("lenet", 4)), ("ensemble-resnet18-1", ("resnet18", 1))],
)
def test_arch_names(name: str, parsed: tuple[str, int] | None) -> None:
    assert parse_ensemble_arch(name) == parsed
    if parsed is not None:
        assert ensemble_arch(*parsed) == name


@pytest.mark.parametrize(
    "name",
    ["ensemble-lenet-0", "ensemble-lenet-65", "ensemble-lenet", "ensemble-ensemble-lenet-2-2"],
)
def test_bad_arch_names_are_refused(name: str) -> None:
    with pytest.raises(XnorlabError):
        parse_ensemble_arch(name)


def test_paper_preset_keeps_each_members_ends_float() -> None:
    model = build_arch("ensemble-lenet-3")
    modes = binarize_model(model, "paper")
    for i in range(3):
        assert modes[f"members.{i}.conv1"] is Mode.FLOAT
        assert modes[f"members.{i}.fc4"] is Mode.FLOAT
        assert modes[f"members.{i}.conv2"] is Mode.XNOR
        assert modes[f"members.{i}.fc3"] is Mode.XNOR
    positions = {info.name: info.position for info in list_layers(model)}
    assert positions["members.1.conv1"] == "first" and positions["members.1.fc4"] == "last"
    assert positions["members.1.conv2"] == ""


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_arch("ensemble-lenet-2")
    binarize_model(model, "paper")
    binarize_model(model, {"members.1.fc3": "bwn"}, warn_first_last=False)
    model.eval()
    modes, configs = layer_settings(model)
    card = {"ensemble": ensemble_card("lenet", [5, 6], "paper", True, [{"val_accuracy": 0.5}] * 2)}
    meta = {"arch": ensemble_arch("lenet", 2), "num_classes": 10, "modes": modes,
            "layer_config": configs, "card": card}  # fmt: skip
    path = save_checkpoint(tmp_path / "ens.pt", model, meta)
    loaded = load_model_spec(str(path))
    assert isinstance(loaded.model, BinaryEnsemble) and loaded.arch == "ensemble-lenet-2"
    assert current_modes(loaded.model) == current_modes(model)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x))
    info = ensemble_info(loaded.card)
    assert info is not None and info.seeds == (5, 6) and info.bagging and info.members == 2
    raw = torch.load(path, weights_only=True)  # plain data: the safe loader opens it
    assert "members.1.fc3.weight" in raw["state_dict"]


@pytest.mark.parametrize(
    "card", [{}, {"ensemble": 3}, {"ensemble": {"members": 10**9, "seeds": []}}, None]
)
def test_malformed_card_entry_reads_as_none(card: object) -> None:
    assert ensemble_info(card) is None
