"""Model files: round trips, the pickle guard, and every bad-file case."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from xnorlab.binary.modes import InputScaling, Mode
from xnorlab.binary.surgery import binarize_model
from xnorlab.common.errors import XnorlabError
from xnorlab.data.images import MNIST_PREPROCESSING
from xnorlab.models.checkpoint import layer_settings, read_checkpoint, save_checkpoint
from xnorlab.models.demo import build_demo
from xnorlab.models.spec import load_model_spec


def _meta(model: nn.Module) -> dict[str, object]:
    modes, configs = layer_settings(model)
    return {
        "arch": "lenet",
        "num_classes": 10,
        "class_names": [str(d) for d in range(10)],
        "preprocessing": MNIST_PREPROCESSING.to_json(),
        "modes": modes,
        "layer_config": configs,
        "card": {"note": "test"},
    }


def _xnor_lenet() -> nn.Module:
    model = build_demo("lenet")
    binarize_model(model, "paper", scaling="scalar")
    model.eval()
    return model


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".safetensors"])
def test_round_trip_restores_weights_modes_and_settings(tmp_path: Path, suffix: str) -> None:
    model = _xnor_lenet()
    path = save_checkpoint(tmp_path / f"net{suffix}", model, _meta(model))
    assert not list(tmp_path.glob("*.partial"))
    loaded = load_model_spec(str(path))
    assert loaded.modes["conv2"] is Mode.XNOR and loaded.modes["conv1"] is Mode.FLOAT
    assert loaded.model.get_submodule("fc3").config.scaling is InputScaling.SCALAR
    assert loaded.card == {"note": "test"} and loaded.arch == "lenet"
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))


def test_pt_file_loads_with_weights_only(tmp_path: Path) -> None:
    model = _xnor_lenet()
    path = save_checkpoint(tmp_path / "net.pt", model, _meta(model))
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"xnorlab", "state_dict"} and raw["xnorlab"]["arch"] == "lenet"


def test_torchscript_round_trip(tmp_path: Path) -> None:
    model = build_demo("lenet").eval()
    path = save_checkpoint(
        tmp_path / "net.ts",
        model,
        {"preprocessing": MNIST_PREPROCESSING.to_json(), "class_names": list("0123456789")},
    )
    loaded = load_model_spec(str(path))
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), model(x), atol=1e-6)
    assert loaded.input_shape == (1, 28, 28) and loaded.class_names[3] == "3"


class _Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def test_crafted_pickle_does_not_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Payload(marker)}, path)
    with pytest.raises(XnorlabError, match=r"could run code.*--trust"):
        load_model_spec(str(path))
    with pytest.raises(XnorlabError, match="could run code"):
        load_model_spec(f"lenet:{path}")
    assert not marker.exists()
    plain = tmp_path / "evil.pth"
    plain.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(XnorlabError):
        read_checkpoint(plain)
    assert not marker.exists()


def test_trust_allows_a_whole_pickled_model(tmp_path: Path) -> None:
    model = build_demo("lenet").eval()
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    with pytest.raises(XnorlabError, match="--trust"):
        load_model_spec(str(path))
    loaded = load_model_spec(str(path), trust=True)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))
    assert loaded.input_shape == (1, 28, 28)


def test_plain_state_dict_needs_and_accepts_an_architecture(tmp_path: Path) -> None:
    model = build_demo("lenet", num_classes=4).eval()
    path = tmp_path / "weights.pth"
    torch.save(
        {"model_state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path
    )
    with pytest.raises(XnorlabError, match=r"no architecture.*lenet:"):
        load_model_spec(str(path))
    loaded = load_model_spec(f"lenet:{path}")  # class count inferred, DataParallel prefix dropped
    assert loaded.model.get_submodule("fc4").out_features == 4
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))


def test_bad_files_each_give_one_clear_error(tmp_path: Path) -> None:
    model = _xnor_lenet()
    good = save_checkpoint(tmp_path / "good.pt", model, _meta(model)).read_bytes()
    cases = {
        "empty.pt": (b"", "empty"),
        "text.pt": (b"hello, not a checkpoint", "corrupt or truncated"),
        "cut.pt": (good[: len(good) // 2], "corrupt or truncated"),
        "cut.safetensors": (b"\x10\x00\x00\x00\x00\x00\x00\x00{", "not a valid safetensors"),
        "noise.ts": (b"PK\x03\x04garbage", "not a loadable TorchScript"),
        "model.onnx": (b"onnx", "unknown model file type"),
    }
    for name, (data, phrase) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(XnorlabError, match=phrase):
            load_model_spec(str(tmp_path / name))
    with pytest.raises(XnorlabError, match="does not exist"):
        load_model_spec(str(tmp_path / "missing.pt"))


def test_mismatched_state_dict_and_wrong_arch(tmp_path: Path) -> None:
    model = _xnor_lenet()
    state = model.state_dict()
    del state["fc3.weight"]
    state["extra.bias"] = torch.zeros(3)
    torch.save({"xnorlab": _meta(model), "state_dict": state}, tmp_path / "mismatch.pt")
    with pytest.raises(
        XnorlabError, match=r"does not fit the architecture: missing 1 .*unexpected 1"
    ):
        load_model_spec(str(tmp_path / "mismatch.pt"))
    vgg_state = build_demo("vgg").state_dict()
    torch.save(vgg_state, tmp_path / "vgg.pt")
    with pytest.raises(XnorlabError, match="does not fit"):
        load_model_spec(f"lenet:{tmp_path / 'vgg.pt'}")
    meta = {**_meta(model), "arch": "not-a-net"}
    torch.save({"xnorlab": meta, "state_dict": model.state_dict()}, tmp_path / "arch.pt")
    with pytest.raises(XnorlabError, match="unknown model 'not-a-net'"):
        load_model_spec(str(tmp_path / "arch.pt"))
    nan_state = {k: v.clone() for k, v in model.state_dict().items()}
    nan_state["fc4.bias"][0] = float("nan")
    torch.save(nan_state, tmp_path / "nan.pt")
    with pytest.raises(XnorlabError, match="NaN"):
        load_model_spec(f"lenet:{tmp_path / 'nan.pt'}")
