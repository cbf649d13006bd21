"""An ensemble exported as ONE ``.xnor`` file: the same outputs as its checkpoint, its members
listed in the metadata, and crafted ensemble metadata refused in one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from xnorlab.binary.surgery import binarize_model
from xnorlab.cli.main import main
from xnorlab.models.checkpoint import layer_settings, save_checkpoint
from xnorlab.models.ensemble import BinaryEnsemble, ensemble_card, ensemble_info
from xnorlab.models.packed_layers import has_packed_layers
from xnorlab.models.spec import load_model_spec
from xnorlab.models.xnor_file import XnorFileError, export_xnor, load_xnor
from xnorlab.models.zoo import build_arch


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("ensemble")
    torch.manual_seed(1)
    model = build_arch("ensemble-lenet-3")
    binarize_model(model, "paper")
    model.train()
    with torch.no_grad():  # BatchNorm statistics that are not the defaults
        for _ in range(3):
            model(torch.randn(16, 1, 28, 28))
    model.eval()
    modes, configs = layer_settings(model)
    card = {"ensemble": ensemble_card("lenet", [0, 1, 2], "paper", False, [{}] * 3)}
    meta = {"arch": "ensemble-lenet-3", "num_classes": 10, "modes": modes,
            "layer_config": configs, "card": card}  # fmt: skip
    checkpoint = save_checkpoint(folder / "ens.pt", model, meta)
    loaded = load_model_spec(str(checkpoint))
    export_xnor(loaded.model, folder / "ens.xnor", loaded)
    return checkpoint, folder / "ens.xnor"


def _meta(path: Path) -> dict[str, Any]:
    with safe_open(str(path), framework="pt") as handle:
        return dict(json.loads(handle.metadata()["xnorlab"]))


def test_round_trip_gives_the_checkpoints_outputs(exported: tuple[Path, Path]) -> None:
    checkpoint, xnor = exported
    original = load_model_spec(str(checkpoint))
    packed = load_xnor(xnor)
    assert isinstance(packed.model, BinaryEnsemble) and has_packed_layers(packed.model)
    assert packed.arch == "ensemble-lenet-3" and len(packed.model.members) == 3
    x = torch.randn(6, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(packed.model(x), original.model(x), rtol=1e-4, atol=1e-4)
    info = ensemble_info(packed.card)
    assert info is not None and info.seeds == (0, 1, 2)


def test_metadata_lists_the_members(exported: tuple[Path, Path]) -> None:
    meta = _meta(exported[1])
    assert meta["architecture"] == {"kind": "ensemble", "name": "ensemble-lenet-3",
                                    "member": "lenet", "members": 3, "num_classes": 10}  # fmt: skip
    packed = {name for name in meta["layers"]}
    assert packed == {f"members.{i}.{layer}" for i in range(3) for layer in ("conv2", "fc3")}


CRAFTED = {
    "too many members": {"name": "ensemble-lenet-65", "members": 65},
    "members field lies": {"members": 2},
    "member field lies": {"member": "vgg"},
    "name and lists both lie": {"name": "ensemble-lenet-4", "members": 4},
    "unknown member": {"name": "ensemble-nonet-3", "member": "nonet"},
    "nested ensemble": {"name": "ensemble-ensemble-lenet-3-1", "member": "ensemble-lenet-3",
                        "members": 1},
    "not an ensemble name": {"name": "lenet"},
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_ensemble_metadata_is_one_line(
    case: str, exported: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = _meta(exported[1])
    meta["architecture"].update(CRAFTED[case])
    path = tmp_path / "crafted.xnor"
    save_file(load_file(str(exported[1])), str(path), metadata={"xnorlab": json.dumps(meta)})
    with pytest.raises(XnorFileError) as error:
        load_xnor(path)
    assert "\n" not in str(error.value)
    capsys.readouterr()
    assert main(["layers", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xnorlab layers: error: "), lines
