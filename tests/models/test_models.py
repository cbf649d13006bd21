"""Demo architectures, model specs, and the shipped demo checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from xnorlab.binary.modes import Mode
from xnorlab.binary.surgery import binarize_model, list_layers
from xnorlab.common.errors import XnorlabError
from xnorlab.data.datasets import load_dataset, subset
from xnorlab.measure.evaluate import evaluate
from xnorlab.models.demo import build_demo
from xnorlab.models.spec import CHECKPOINT_DIR, DEMO_CHECKPOINTS, load_model_spec


@pytest.mark.parametrize("arch", ["lenet", "vgg"])
@pytest.mark.parametrize("preset", ["float", "paper-bwn", "paper"])
def test_demo_nets_run_and_learn_in_every_mode(arch: str, preset: str) -> None:
    model = build_demo(arch)
    modes = binarize_model(model, preset)
    names = list(modes)
    assert modes[names[0]] is Mode.FLOAT and modes[names[-1]] is Mode.FLOAT  # paper default
    shape = {"lenet": (1, 28, 28), "vgg": (3, 32, 32)}[arch]
    x = torch.randn(4, *shape)
    logits = model(x)
    assert logits.shape == (4, 10)
    nn.functional.cross_entropy(logits, torch.arange(4)).backward()
    inner = model.get_submodule(names[1])
    assert inner.weight.grad is not None and float(inner.weight.grad.abs().sum()) > 0


def test_binary_layers_are_fed_by_batchnorm_and_hardtanh() -> None:
    """Paper block order: BN -> (sign via Hardtanh's sign-preserving clip) -> binary conv."""
    model = build_demo("lenet")
    children = [name for name, _ in model.named_children()]
    for conv in ("conv2", "fc3"):
        at = children.index(conv)
        assert isinstance(model.get_submodule(children[at - 1]), nn.Hardtanh)
        assert isinstance(model.get_submodule(children[at - 2]), (nn.BatchNorm1d, nn.BatchNorm2d))
    assert [info.position for info in list_layers(model)] == ["first", "", "", "last"]


def test_specs_for_architectures_and_unknown_names() -> None:
    vgg = load_model_spec("demo:vgg")
    assert vgg.card["trained"] is False and vgg.input_shape == (3, 32, 32)
    assert vgg.class_names[0] == "airplane"
    net = load_model_spec("resnet18")
    assert net.input_shape == (3, 224, 224) and len(net.class_names) == 1000
    with pytest.raises(XnorlabError, match="unknown demo"):
        load_model_spec("demo:alexnet")
    with pytest.raises(XnorlabError):
        load_model_spec("   ")


def test_shipped_checkpoints_are_small_and_carry_cards() -> None:
    paths = [CHECKPOINT_DIR / name for name in DEMO_CHECKPOINTS.values()]
    weight_bytes = 4 * sum(v.numel() for v in build_demo("lenet").state_dict().values())
    for path in paths:  # the weights in float32 and little else (no optimizer state)
        assert path.stat().st_size < 1.05 * weight_bytes + 64 * 1024, path.name
        card = json.loads(path.with_suffix(".json").read_text())
        assert card["val_items"] == 1000 and card["kept"].startswith("last epoch of 30")
        for key in ("recipe", "seed", "epochs", "val_accuracy", "training_seconds", "date",
                    "xnorlab_version", "torch_version"):  # fmt: skip
            assert key in card, (path.name, key)
        assert card["data"] == "mnist5k" and not card["cancelled"]


@pytest.mark.parametrize(
    ("spec", "binary_mode"),
    [("demo:lenet", Mode.FLOAT), ("demo:lenet-bwn", Mode.BWN), ("demo:lenet-xnor", Mode.XNOR)],
)
def test_shipped_checkpoints_classify_validation_digits(spec: str, binary_mode: Mode) -> None:
    loaded = load_model_spec(spec)
    assert loaded.modes["conv2"] is binary_mode and loaded.modes["fc3"] is binary_mode
    assert loaded.modes["conv1"] is Mode.FLOAT and loaded.default_data == "mnist5k"
    val = subset(load_dataset("mnist5k").val, 300, seed=3)
    result = evaluate(loaded.model, val, loaded.class_names)
    assert result.top1 >= 0.97  # cards: ~0.99 on all 1,000 validation digits
    assert result.top1 == pytest.approx(loaded.card["val_accuracy"], abs=0.03)


def test_digit_scans_on_paper_are_read_like_mnist(tmp_path) -> None:
    """Validation digits saved as dark-on-light, 3x larger JPEGs are still recognised."""
    import numpy as np
    from PIL import Image

    from xnorlab.cli.predict import predict_images

    bundle = load_dataset("mnist5k")
    loaded = load_model_spec("demo:lenet")
    picks = range(0, 1000, 50)  # 20 digits, two of each class
    paths, labels = [], []
    for index in picks:
        image, label = bundle.val[index]
        pixels = (image[0] * 0.3081 + 0.1307).clamp(0, 1).numpy()
        paper = Image.fromarray((255 - pixels * 255).astype(np.uint8)).resize((84, 84))
        path = tmp_path / f"{index}.jpg"
        paper.convert("RGB").save(path, quality=90)
        paths.append(str(path))
        labels.append(str(int(label)))
    predictions = predict_images(loaded, paths, topk=1)
    hits = sum(p["top"][0]["class"] == y for p, y in zip(predictions, labels, strict=True))
    assert hits >= 18
