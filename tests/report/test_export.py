"""The .xnor file: export -> load -> same outputs; compact; every broken file is one clear error."""

from __future__ import annotations

import copy
import io
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from xnorlab import engine
from xnorlab.binary.surgery import binarize_model
from xnorlab.data.images import MNIST_PREPROCESSING
from xnorlab.models.loaded import LoadedModel
from xnorlab.models.packed_layers import PackedConv2d, PackedLinear
from xnorlab.models.xnor_file import FORMAT_VERSION, XnorFileError, export_xnor, load_xnor


def _float_state_bytes(model: torch.nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def _roundtrip(loaded: LoadedModel, modes: str, path: Path, **settings: str) -> LoadedModel:
    binarize_model(loaded.model, modes, warn_first_last=False, **settings)
    export_xnor(loaded.model, path, loaded)
    return load_xnor(path)


def _words_by_the_docs(weight: torch.Tensor) -> torch.Tensor:
    """docs/xnor-format.md, literally: the int64 words ``(O, taps, ceil(C/64))`` of ``weight``.

    Channel ``c`` of tap ``t = ky * kw + kx`` is bit ``c % 64`` of word ``c // 64``; bit 1 means
    ``W < 0``; padding bits are 0; a word is a two's-complement int64.
    """
    flat = weight.reshape(weight.shape[0], weight.shape[1], -1)
    out_channels, channels, taps = flat.shape
    words = torch.zeros((out_channels, taps, -(-channels // 64)), dtype=torch.int64)
    for o in range(out_channels):
        for t in range(taps):
            values = [0] * words.shape[2]
            for c in range(channels):
                if float(flat[o, c, t]) < 0:
                    values[c // 64] |= 1 << (c % 64)
            words[o, t] = torch.tensor([v - (1 << 64) if v >= 1 << 63 else v for v in values])
    return words


def test_file_stores_the_documented_words(tmp_path: Path, lenet_loaded: LoadedModel) -> None:
    binarize_model(lenet_loaded.model, "paper")
    conv = lenet_loaded.model.get_submodule("conv2")
    with torch.no_grad():
        conv.weight[0, :, 0, 0] = torch.tensor([0.0, -0.0, -1e-9, 2.0] * 8)  # sign(0) = +1
        conv.weight[1] = -1.0  # every used bit set, padding bits (channels 32..63) still 0
    path = tmp_path / "lenet.xnor"
    export_xnor(lenet_loaded.model, path, lenet_loaded)
    tensors = load_file(str(path))
    bits = tensors["conv2.bits"]
    assert bits.dtype == torch.int64 and tuple(bits.shape) == (64, 25, 1)
    assert bits[0, 0, 0].item() == sum(1 << c for c in range(2, 32, 4))
    assert bits[1, 0, 0].item() == (1 << 32) - 1
    assert torch.equal(bits, _words_by_the_docs(conv.weight.detach()))
    fc_weight = lenet_loaded.model.get_submodule("fc3").weight.detach()
    assert torch.equal(tensors["fc3.bits"], _words_by_the_docs(fc_weight.unsqueeze(-1)))
    assert tensors["fc3.bits"].shape == (512, 1, 16)  # 512 outputs, 1 tap, 1024 inputs / 64
    alpha = conv.weight.detach().abs().mean(dim=(1, 2, 3))
    torch.testing.assert_close(tensors["conv2.alpha"], alpha)


def test_loading_builds_packed_weights_from_the_words(
    good_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_packing(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("loading packed float weights")

    monkeypatch.setattr(engine, "pack_conv2d_weight", no_packing)
    monkeypatch.setattr(engine, "pack_linear_weight", no_packing)
    stored = load_file(str(good_file))
    reopened = load_xnor(good_file)
    reopened.model(torch.randn(2, 1, 28, 28))
    for name in ("conv2", "fc3"):
        layer = reopened.model.get_submodule(name)
        assert torch.equal(layer.packed.to_state()["bits"], stored[f"{name}.bits"])
        assert layer._float_weight is None  # the engine ran the words; no alpha*sign made


@pytest.mark.parametrize(
    ("arch", "modes", "settings"),
    [
        ("lenet", "paper", {}),
        ("lenet", "paper-bwn", {}),
        ("vgg", "paper", {"pad_mode": "one", "scaling": "scalar"}),
        ("vgg", "paper", {"pad_mode": "zero", "scaling": "kmap"}),
    ],
)
def test_export_load_gives_the_same_outputs(
    tmp_path: Path, arch: str, modes: str, settings: dict[str, str], make_demo: Any
) -> None:
    loaded = make_demo(arch)
    reopened = _roundtrip(loaded, modes, tmp_path / "m.xnor", **settings)
    x = torch.randn(6, *loaded.input_shape)
    with torch.no_grad():
        expected, got = loaded.model(x), reopened.model(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(got.argmax(dim=1), expected.argmax(dim=1))
    packed = [m for m in reopened.model.modules() if isinstance(m, (PackedConv2d, PackedLinear))]
    assert len(packed) == sum(
        1 for mode in loaded.model.modules() if getattr(mode, "mode", "float") != "float"
    )
    assert all(not hasattr(m, "weight") for m in packed)  # no float weights of binary layers
    assert reopened.class_names == loaded.class_names
    assert reopened.input_shape == loaded.input_shape
    assert reopened.arch == arch


def test_lenet_export_is_at_least_15x_smaller(tmp_path: Path, lenet_loaded: LoadedModel) -> None:
    path = tmp_path / "lenet.xnor"
    binarize_model(lenet_loaded.model, "paper")
    size = export_xnor(lenet_loaded.model, path, lenet_loaded)
    assert size == path.stat().st_size
    assert _float_state_bytes(lenet_loaded.model) / size >= 15.0


def test_export_refuses_unknown_architectures(tmp_path: Path, tiny_loaded: LoadedModel) -> None:
    binarize_model(tiny_loaded.model, "paper")
    with pytest.raises(XnorFileError, match="cannot export"):
        export_xnor(tiny_loaded.model, tmp_path / "t.xnor", tiny_loaded)
    with pytest.raises(XnorFileError, match=r"\.xnor"):
        export_xnor(tiny_loaded.model, tmp_path / "t.bin", tiny_loaded)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def good_file(tmp_path: Path, lenet_loaded: LoadedModel) -> Path:
    path = tmp_path / "good.xnor"
    binarize_model(lenet_loaded.model, "paper")
    export_xnor(lenet_loaded.model, path, lenet_loaded)
    return path


def _rewrite(path: Path, target: Path, meta_change: dict | None = None, drop: str = "",
             replace: dict | None = None, edit: Callable[[dict], Any] | None = None) -> Path:  # fmt: skip
    with safe_open(str(path), "pt") as handle:
        meta = json.loads(handle.metadata()["xnorlab"])
    tensors = load_file(str(path))
    meta.update(meta_change or {})
    if edit is not None:
        edit(meta)
    tensors.pop(drop, None)
    tensors.update(replace or {})
    save_file(tensors, str(target), metadata={"xnorlab": json.dumps(meta)})
    return target


def _broken_files(good: Path) -> dict[str, Path]:
    raw = good.read_bytes()
    folder = good.parent
    cases = {
        "empty": b"",
        "truncated": raw[: len(raw) // 2],
        "header only": raw[:200],
        "garbage": bytes(range(256)) * 4,
        "bad header": raw[:8] + b"{not json" + raw[17:],
    }
    files = {}
    for name, data in cases.items():
        files[name] = folder / f"{name.replace(' ', '_')}.xnor"
        files[name].write_bytes(data)
    save_file({"a": torch.zeros(2)}, str(folder / "plain.xnor"))
    files["plain safetensors"] = folder / "plain.xnor"
    files["future version"] = _rewrite(good, folder / "v9.xnor", {"format_version": 9})
    files["no version"] = _rewrite(good, folder / "v.xnor", {"format_version": "2"})
    files["unknown arch"] = _rewrite(
        good, folder / "arch.xnor", {"architecture": {"kind": "x", "name": "y"}}
    )
    files["missing alpha"] = _rewrite(good, folder / "alpha.xnor", drop="conv2.alpha")
    files["missing float"] = _rewrite(good, folder / "bn.xnor", drop="bn2.running_var")
    files["wrong bits"] = _rewrite(
        good, folder / "bits.xnor", replace={"fc3.bits": torch.zeros(3, 3, dtype=torch.uint8)}
    )
    files["padding bits"] = _rewrite(
        good, folder / "pad.xnor", replace={"conv2.bits": torch.full((64, 25, 1), -1)}
    )
    files["nan alpha"] = _rewrite(
        good, folder / "nan.xnor", replace={"fc3.alpha": torch.full((256,), float("nan"))}
    )
    files["wrong float"] = _rewrite(
        good, folder / "fl.xnor", replace={"fc4.weight": torch.zeros(3, 3)}
    )
    return files  # fmt: skip


def test_every_broken_file_is_one_clear_error(good_file: Path) -> None:
    for name, path in _broken_files(good_file).items():
        with pytest.raises(XnorFileError) as info:
            load_xnor(path)
        message = str(info.value)
        assert "\n" not in message and len(message) < 300, name
    with pytest.raises(XnorFileError, match="cannot read"):
        load_xnor(good_file.parent / "missing.xnor")
    load_xnor(good_file)  # the good file still opens


def _conv2(meta: dict) -> dict:
    return meta["layers"]["conv2"]


CRAFTED = {
    "huge num_classes": (lambda m: m["architecture"].update(num_classes=10**12), "num_classes"),
    "num_classes 2**63": (lambda m: m["architecture"].update(num_classes=2**63), "num_classes"),
    "num_classes true": (lambda m: m["architecture"].update(num_classes=True), "num_classes"),
    "fewer class names": (lambda m: m.update(class_names=["a", "b"]), "names 2 classes"),
    "class names not strings": (lambda m: m.update(class_names=list(range(10))), "class name"),
    "huge preprocessing": (lambda m: m["preprocessing"].update(height=10**6), "height"),
    "wrong preprocessing size": (
        lambda m: (m["preprocessing"].update(height=8, width=8), m.update(input_shape=[1, 8, 8])),
        "does not run on its input [1, 8, 8]",
    ),
    "input_shape beside preprocessing": (lambda m: m.update(input_shape=[1, 9, 9]), "differs"),
    "nan preprocessing mean": (lambda m: m["preprocessing"].update(mean=[float("nan")]), "NaN"),
    "groups 0": (lambda m: _conv2(m)["geometry"].update(groups=0), "groups 0"),
    "unknown padding mode": (lambda m: _conv2(m)["geometry"].update(padding_mode="x"), "padding_mode"),
    "stride against BatchNorm": (lambda m: _conv2(m)["geometry"].update(stride=[2, 2]), "stride"),
    "unknown layer kind": (lambda m: _conv2(m).update(kind="conv3d"), "kind"),
    "float mode stored packed": (lambda m: _conv2(m)["config"].update(mode="float"), "bwn or xnor"),
    "unknown scaling": (lambda m: _conv2(m)["config"].update(scaling="huge"), "InputScaling"),
    "infinite clip": (lambda m: _conv2(m)["config"].update(clip=1e308 * 10), "Infinity"),
    "negative weight shape": (lambda m: _conv2(m).update(weight_shape=[-64, 32, 5, 5]), "weight_shape"),
    "bias claimed": (lambda m: _conv2(m).update(has_bias=True), "bias"),
    "card a list": (lambda m: m.update(card=[1, 2]), "card"),
}  # fmt: skip


@pytest.fixture
def file_with_preprocessing(tmp_path: Path, lenet_loaded: LoadedModel) -> Path:
    path = tmp_path / "prep.xnor"
    binarize_model(lenet_loaded.model, "paper")
    lenet_loaded.preprocessing = MNIST_PREPROCESSING
    export_xnor(lenet_loaded.model, path, lenet_loaded)
    return path


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_metadata_is_one_clear_line(file_with_preprocessing: Path, case: str) -> None:
    edit, phrase = CRAFTED[case]
    good = file_with_preprocessing
    load_xnor(good)
    path = _rewrite(good, good.parent / "crafted.xnor", edit=edit)
    with pytest.raises(XnorFileError) as info:
        load_xnor(path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 300 and phrase in message, message


def test_numbers_too_large_for_a_float_are_refused(good_file: Path) -> None:
    with safe_open(str(good_file), "pt") as handle:
        text = handle.metadata()["xnorlab"]
    assert '"clip": 1.0' in text
    path = good_file.parent / "e999.xnor"
    save_file(load_file(str(good_file)), str(path),
              metadata={"xnorlab": text.replace('"clip": 1.0', '"clip": 1e999', 1)})  # fmt: skip
    with pytest.raises(XnorFileError, match=r"non-finite number|not a finite number"):
        load_xnor(path)


def test_deeply_nested_metadata_is_one_clear_line(good_file: Path) -> None:
    tensors = load_file(str(good_file))
    deep = (
        '{"format": "xnorlab-packed", "format_version": 2, "x": ' + "[" * 50000 + "]" * 50000 + "}"
    )
    save_file(tensors, str(good_file.parent / "deep.xnor"), metadata={"xnorlab": deep})
    with pytest.raises(XnorFileError, match="nested"):
        load_xnor(good_file.parent / "deep.xnor")


def test_a_lying_header_length_allocates_nothing(good_file: Path) -> None:
    raw = good_file.read_bytes()
    for claimed in (2**63 - 1, len(raw), 0):
        path = good_file.parent / "lying.xnor"
        path.write_bytes(claimed.to_bytes(8, "little") + raw[8:])
        with pytest.raises(XnorFileError, match="header length"):
            load_xnor(path)


def test_older_format_version_says_what_to_do(good_file: Path) -> None:
    old = _rewrite(good_file, good_file.parent / "old.xnor", {"format_version": 1})
    with pytest.raises(XnorFileError) as info:
        load_xnor(old)
    message = str(info.value)
    assert "\n" not in message and "format version 1" in message
    assert f"reads version {FORMAT_VERSION}" in message
    assert "export it again" in message and "xnorlab export demo:lenet" in message


@pytest.mark.parametrize(("arch", "modes"), [("lenet", "paper"), ("lenet", "paper-bwn")])
def test_loaded_models_deep_copy_after_a_forward(
    tmp_path: Path, arch: str, modes: str, make_demo: Any
) -> None:
    reopened = _roundtrip(make_demo(arch), modes, tmp_path / "m.xnor")
    x = torch.randn(3, *reopened.input_shape)
    with torch.no_grad():
        before = reopened.model(x)
        twin = copy.deepcopy(reopened.model)
        from_pickle = pickle.loads(pickle.dumps(reopened.model))
        outputs = [reopened.model(x), twin(x), from_pickle(x)]
    for out in outputs:
        assert torch.equal(out, before)
    packed = [m for m in twin.modules() if isinstance(m, (PackedConv2d, PackedLinear))]
    originals = [m for m in reopened.model.modules() if isinstance(m, (PackedConv2d, PackedLinear))]
    assert len(packed) == 2 and all(
        a.packed is not b.packed for a, b in zip(packed, originals, strict=True)
    )


def test_model_spec_dispatches_xnor_files(good_file: Path) -> None:
    from xnorlab.models.spec import load_model_spec

    loaded = load_model_spec(str(good_file))
    assert any(isinstance(m, PackedLinear) for m in loaded.model.modules())
    assert loaded.card["packed_modes"] == {"conv2": "xnor", "fc3": "xnor"}


def test_shipped_xnor_demo_exports_small_and_predicts_identically(tmp_path: Path) -> None:
    from xnorlab.data.datasets import load_dataset
    from xnorlab.models.spec import load_model_spec

    loaded = load_model_spec("demo:lenet-xnor")
    path = tmp_path / "lenet-xnor.xnor"
    size = export_xnor(loaded.model, path, loaded)
    assert _float_state_bytes(loaded.model) / size >= 15.0  # issue 6 target
    reopened = load_xnor(path)
    bundle = load_dataset("mnist5k", loaded.preprocessing, loaded.class_names)
    x = torch.stack([bundle.val[i][0] for i in range(300)])
    with torch.no_grad():
        expected, got = loaded.model(x), reopened.model(x)
    assert torch.equal(got.argmax(dim=1), expected.argmax(dim=1))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_packed_models_cannot_be_reexported_or_reported(good_file: Path, tmp_path: Path) -> None:
    from xnorlab.common.errors import XnorlabError
    from xnorlab.report.build import ReportData, build_report

    reopened = load_xnor(good_file)
    with pytest.raises(XnorFileError, match="already a packed"):
        export_xnor(reopened.model, tmp_path / "again.xnor", reopened)
    with pytest.raises(XnorlabError, match="packed"):
        build_report(reopened, None, ReportData("x", torch.randn(2, 1, 28, 28)))
