"""Model files: round trips, the pickle guard, and every bad-file case."""

from __future__ import annotations

import json
import pickle
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from xnorlab.binary.modes import InputScaling, Mode
from xnorlab.binary.surgery import binarize_model
from xnorlab.common.errors import XnorlabError
from xnorlab.data.images import MNIST_PREPROCESSING
from xnorlab.models.checkpoint import (
    ModelFileKind,
    classify_model_file,
    layer_settings,
    read_checkpoint,
    save_checkpoint,
)
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
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp left
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
    corrupt = "corrupt or not a checkpoint"
    cases = {
        "empty.pt": (b"", "empty"),
        "text.pt": (b"hello, not a checkpoint", corrupt),
        "cut.pt": (good[: len(good) // 2], corrupt),
        "cut.safetensors": (b"\x10\x00\x00\x00\x00\x00\x00\x00{", corrupt),
        "noise.ts": (b"PK\x03\x04garbage", corrupt),
        "model.onnx": (b"onnx", "unknown model file type"),
    }
    for name, (data, phrase) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(XnorlabError, match=phrase) as info:
            load_model_spec(str(tmp_path / name))
        assert "\n" not in str(info.value) and "trust" not in str(info.value)
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


def _flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1 :]


def test_random_or_damaged_bytes_are_corrupt_never_a_trust_question(tmp_path: Path) -> None:
    model = _xnor_lenet()
    good = save_checkpoint(tmp_path / "good.pt", model, _meta(model)).read_bytes()
    generator = random.Random(0)
    cases = {
        "random.pt": bytes(generator.randrange(256) for _ in range(5000)),
        "proto.pt": b"\x80\x02" + bytes(generator.randrange(256) for _ in range(5000)),
        "flipped.pt": _flip(good, good.index(b"data.pkl") + 80),
        "cut.pth": good[:-100],
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        assert classify_model_file(path) is ModelFileKind.CORRUPT, name
        for trust in (False, True):
            with pytest.raises(XnorlabError, match="is corrupt or not a checkpoint") as info:
                read_checkpoint(path, trust=trust)
            assert "\n" not in str(info.value) and "trust" not in str(info.value), name


def test_each_kind_of_model_file_is_told_from_its_bytes(tmp_path: Path) -> None:
    model = _xnor_lenet()
    float_net = build_demo("lenet").eval()
    for suffix in (".pt", ".safetensors"):
        save_checkpoint(tmp_path / f"c{suffix}", model, _meta(model))
    save_checkpoint(tmp_path / "c.ts", float_net, {"preprocessing": MNIST_PREPROCESSING.to_json()})
    torch.save(model.state_dict(), tmp_path / "sd.pth")
    torch.save(model.state_dict(), tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    torch.save(float_net, tmp_path / "whole.pt")
    torch.save({"w": _Payload(tmp_path / "pwned")}, tmp_path / "old-evil.pt",
               _use_new_zipfile_serialization=False)  # fmt: skip
    (tmp_path / "plain.pkl.pt").write_bytes(pickle.dumps(_Payload(tmp_path / "pwned")))
    expected = {
        "c.pt": ModelFileKind.CHECKPOINT,
        "c.safetensors": ModelFileKind.SAFETENSORS,
        "c.ts": ModelFileKind.TORCHSCRIPT,
        "sd.pth": ModelFileKind.STATE_DICT,
        "old.pt": ModelFileKind.STATE_DICT,
        "whole.pt": ModelFileKind.FULL_PICKLE,
        "old-evil.pt": ModelFileKind.FULL_PICKLE,
        "plain.pkl.pt": ModelFileKind.CORRUPT,  # torch.load reads no bare pickle
    }
    for name, kind in expected.items():
        assert classify_model_file(tmp_path / name) is kind, name
        assert kind.needs_trust is (kind is ModelFileKind.FULL_PICKLE)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(XnorlabError, match="folder"):
        classify_model_file(tmp_path)


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        ({"num_classes": 2**63}, "num_classes"),
        ({"num_classes": "ten"}, "num_classes"),
        ({"class_names": ["a", "b"]}, "names 2 classes but the model outputs 10"),
        ({"class_names": [1, 2]}, "class name 0"),
        ({"preprocessing": {**MNIST_PREPROCESSING.to_json(), "mean": [1e999]}}, "finite"),
        ({"preprocessing": {**MNIST_PREPROCESSING.to_json(), "height": 10**9}}, "height"),
        ({"preprocessing": {**MNIST_PREPROCESSING.to_json(), "height": 8}}, "does not run"),
        ({"modes": {"conv2": "ternary"}}, "ternary"),
        ({"layer_config": {"fc3": {"clip": -1.0}}}, "clip"),
        ({"layer_config": {"fc3": {"colour": "red"}}}, "unknown key"),
        ({"card": ["not", "a", "dict"]}, "card"),
        ({"default_data": 5}, "default_data"),
        ({"arch": ["lenet"]}, "arch"),
        ({"format": 999}, "written by a newer xnorlab (checkpoint format 999; this one reads"),
        ({"format": "two"}, "format must be a whole number"),
        ({"format": 0}, "format 0 is outside"),
    ],
)
def test_bad_checkpoint_metadata_is_one_line(tmp_path: Path, change: dict, phrase: str) -> None:
    model = _xnor_lenet()
    for suffix in (".pt", ".safetensors"):
        meta = {**_meta(model), **change}
        path = tmp_path / f"net{suffix}"
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        if suffix == ".pt":
            torch.save({"xnorlab": meta, "state_dict": state}, path)
        else:
            save_file(state, str(path), metadata={"xnorlab": json.dumps(meta)})
        with pytest.raises(XnorlabError, match=re.escape(phrase)) as info:
            load_model_spec(str(path))
        assert "\n" not in str(info.value), suffix


def test_nested_metadata_is_refused(tmp_path: Path) -> None:
    model = _xnor_lenet()
    deep = "[" * 10000 + "]" * 10000
    text = json.dumps(_meta(model))[:-1] + f', "extra": {deep}}}'
    path = tmp_path / "deep.safetensors"
    save_file(dict(model.state_dict()), str(path), metadata={"xnorlab": text})
    with pytest.raises(XnorlabError, match="nested"):
        load_model_spec(str(path))


def test_save_is_atomic_and_clears_a_killed_writers_temp(tmp_path: Path) -> None:
    model = _xnor_lenet()
    target = tmp_path / "net.pt"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".net.pt.{dead.pid}.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    save_checkpoint(target, model, _meta(model))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.pt"]

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    before = target.read_bytes()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "save", broken)
        with pytest.raises(XnorlabError, match="No space left"):
            save_checkpoint(target, model, _meta(model))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.pt"]
    assert target.read_bytes() == before


def test_a_file_naming_a_huge_architecture_is_refused_on_a_meta_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few-KB file whose word is '64 resnet18s' must not build them to find its weights do
    not fit: the shapes are checked on the meta device first, nothing real is built."""
    from xnorlab.models import spec

    devices: list[str] = []
    real_build = spec.build_arch

    def recording_build(arch: str, num_classes: int | None = None) -> nn.Module:
        devices.append(str(torch.get_default_device()))
        return real_build(arch, num_classes)

    monkeypatch.setattr(spec, "build_arch", recording_build)
    path = tmp_path / "bomb.pt"
    meta = {"arch": "ensemble-resnet18-64", "modes": {}, "layer_config": {}}
    torch.save({"xnorlab": meta, "state_dict": {"x": torch.zeros(1)}}, path)
    with pytest.raises(XnorlabError, match=r"does not fit the architecture: missing 7808"):
        load_model_spec(str(path))
    assert devices == ["meta"]
    devices.clear()
    model = build_demo("lenet")  # a file that fits is still built for real, once
    torch.save({"xnorlab": {"arch": "lenet"}, "state_dict": model.state_dict()}, path)
    load_model_spec(str(path))
    assert devices == ["meta", "cpu"]
