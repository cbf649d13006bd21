"""Training: it learns, is reproducible, cancels into a valid checkpoint; evaluation maths."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from xnorlab.binary.modes import Mode
from xnorlab.binary.surgery import binarize_model
from xnorlab.common.errors import XnorlabError
from xnorlab.data.bundle import DatasetBundle
from xnorlab.data.datasets import load_dataset, subset
from xnorlab.data.images import MNIST_PREPROCESSING
from xnorlab.measure.evaluate import evaluate
from xnorlab.models.demo import build_demo
from xnorlab.models.spec import load_model_spec
from xnorlab.train.training import TrainConfig, augment_batch, train


@pytest.fixture(scope="module")
def small_digits() -> DatasetBundle:
    """600 train / 150 val of sklearn's digits (28x28, MNIST layout)."""
    full = load_dataset("digits")
    return DatasetBundle(
        name="digits-small",
        train=subset(full.train, 600, seed=1),
        val=subset(full.val, 150, seed=2),
        class_names=full.class_names,
        preprocessing=full.preprocessing,
    )


def _meta() -> dict[str, object]:
    return {"arch": "lenet", "num_classes": 10, "default_data": "digits"}


def test_xnor_training_improves_validation_accuracy(small_digits, tmp_path: Path) -> None:
    model = build_demo("lenet")
    binarize_model(model, "paper")
    before = evaluate(model, small_digits.val, small_digits.class_names).top1
    config = TrainConfig(epochs=2, batch_size=32, lr=3e-3, seed=0, max_train_items=256)
    seen: list[float] = []
    result = train(model, small_digits, config, lambda f, m, d: seen.append(f),
                   checkpoint=tmp_path / "x.pt", meta=_meta())  # fmt: skip
    assert result.val is not None and result.val.value > before + 0.3  # random init is ~0.1
    assert result.kept_epoch == 2 and result.val.n == 150
    assert [m.epoch for m in result.history] == [1, 2] and not result.cancelled
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    loaded = load_model_spec(str(tmp_path / "x.pt"))
    assert loaded.modes["conv2"] is Mode.XNOR
    assert evaluate(loaded.model, small_digits.val).top1 == pytest.approx(result.val.value)
    assert loaded.card["val_accuracy"] == pytest.approx(result.val.value)
    low, high = loaded.card["val_interval95"]
    assert low < result.val.value < high and loaded.card["val_items"] == 150
    assert loaded.card["epochs"] == 2 and loaded.card["seed"] == 0


def test_keep_best_selects_on_a_split_carved_from_train_and_reports_on_val(
    small_digits, tmp_path: Path
) -> None:
    model = build_demo("lenet")
    config = TrainConfig(epochs=3, batch_size=32, lr=3e-3, keep="best", select_fraction=0.2)
    result = train(model, small_digits, config, checkpoint=tmp_path / "b.pt", meta=_meta())
    monitored = [m.val_acc for m in result.history]
    assert result.kept_epoch == 1 + monitored.index(max(monitored))
    assert result.monitor_acc == max(monitored)
    assert result.val is not None and result.val.n == len(small_digits.val)
    assert evaluate(model, small_digits.val).top1 == pytest.approx(result.val.value)
    assert result.card["kept"].startswith("best epoch on a stratified 20% of the training split")
    assert result.card["kept_epoch"] == result.kept_epoch and result.card["train_items"] == 480


def test_selection_split_is_stratified_and_disjoint_from_training(small_digits) -> None:
    from xnorlab.train.training import _splits

    splits = _splits(small_digits, TrainConfig(keep="best", select_fraction=0.2, seed=3))
    chosen, rest = set(splits.select.indices), set(splits.train.indices)
    assert not chosen & rest and len(chosen | rest) == len(small_digits.train)
    assert len(chosen) == 120 and splits.report is small_digits.val


def test_training_on_all_data_reports_nothing_and_uses_every_item(small_digits) -> None:
    config = TrainConfig(epochs=1, batch_size=50, train_on_all=True)
    result = train(build_demo("lenet"), small_digits, config)
    assert result.val is None and result.kept_epoch == 1
    assert math.isnan(result.history[0].val_acc)
    with pytest.raises(XnorlabError, match="keep last"):
        train(build_demo("lenet"), small_digits, TrainConfig(train_on_all=True, keep="best"))


def test_same_seed_same_result(small_digits) -> None:
    runs = []
    for _ in range(2):
        torch.manual_seed(123)  # different global state: the run must reseed itself
        model = build_demo("lenet")
        config = TrainConfig(epochs=1, batch_size=64, seed=7, max_train_items=128)
        result = train(model, small_digits, config)
        runs.append((result.history[0].train_loss, next(iter(model.state_dict().values()))))
        torch.manual_seed(999)
    assert runs[0][0] == runs[1][0]
    assert not torch.equal(runs[0][1], build_demo("lenet").state_dict()["conv1.weight"])


def test_cancel_leaves_a_valid_checkpoint(small_digits, tmp_path: Path) -> None:
    model = build_demo("lenet")
    binarize_model(model, "paper-bwn")
    calls = {"n": 0}

    def cancel_after_three_batches() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    path = tmp_path / "cancelled.pt"
    result = train(model, small_digits, TrainConfig(epochs=5, batch_size=16),
                   should_cancel=cancel_after_three_batches, checkpoint=path, meta=_meta())  # fmt: skip
    assert result.cancelled and len(result.history) == 1
    loaded = load_model_spec(str(path))
    assert loaded.card["cancelled"] is True and loaded.modes["fc3"] is Mode.BWN
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model.eval()(x))


def test_augmentation_moves_pixels_but_keeps_shape_and_background() -> None:
    images = torch.full((4, 1, 28, 28), -0.42)
    images[:, :, 10:18, 12:16] = 2.8
    generator = torch.Generator().manual_seed(0)
    config = TrainConfig(shift_px=2, rotate_deg=10, scale=0.1)
    out = augment_batch(images, config, generator)
    assert out.shape == images.shape and not torch.equal(out, images)
    assert float(out[:, :, 0, :].max()) == pytest.approx(-0.42, abs=1e-5)
    none = TrainConfig(shift_px=0, rotate_deg=0, scale=0)
    assert augment_batch(images, none, generator) is images


def test_bad_training_settings_and_empty_data(small_digits) -> None:
    with pytest.raises(XnorlabError, match="learning rate"):
        train(build_demo("lenet"), small_digits, TrainConfig(lr=float("nan")))
    empty = DatasetBundle(
        "e", small_digits.train, subset(small_digits.val, 0), [], MNIST_PREPROCESSING
    )
    with pytest.raises(XnorlabError, match="non-empty"):
        train(build_demo("lenet"), empty, TrainConfig(epochs=1))


class _Fixed(nn.Module):
    """Predicts class ``x[0]`` with a known second choice ``x[1]``."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(1, 3)  # only to expose the class count

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(x), 3)
        logits[torch.arange(len(x)), x[:, 0].long()] = 2.0
        logits[torch.arange(len(x)), x[:, 1].long()] = 1.0
        return logits


def test_evaluate_counts_top1_top_k_per_class_and_confusion() -> None:
    # (first choice, second choice) -> true label
    inputs = torch.tensor([[0, 1], [0, 1], [1, 2], [2, 0], [2, 1]], dtype=torch.float32)
    labels = torch.tensor([0, 1, 1, 0, 0])
    result = evaluate(
        _Fixed(), TensorDataset(inputs, labels), ["a", "b", "c"], batch_size=2, topk=2
    )
    assert result.top1 == pytest.approx(2 / 5)
    assert result.top5 == pytest.approx(4 / 5)  # top-2 here (k as asked)
    assert result.per_class["a"] == pytest.approx(1 / 3) and result.per_class["b"] == 0.5
    assert math.isnan(result.per_class["c"])  # no sample of class c
    assert result.confusion == [[1, 0, 2], [1, 1, 0], [0, 0, 0]]
    assert result.count == 5 and result.complete
    wrong = TensorDataset(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(XnorlabError, match="outputs shape"):
        evaluate(_Fixed(), wrong, ["a", "b"])


def test_binarize_then_recover_fine_tuning() -> None:
    """The shipped float LeNet collapses when binarized post hoc; a short fine-tune recovers."""
    from xnorlab.data.datasets import load_dataset as load

    mnist = load("mnist5k")
    val = subset(mnist.val, 150, seed=4)
    model = load_model_spec("demo:lenet").model
    float_top1 = evaluate(model, val).top1
    binarize_model(model, "paper")
    posthoc = evaluate(model, val).top1
    assert posthoc < float_top1 - 0.2
    bundle = DatasetBundle("ft", subset(mnist.train, 192, seed=5), val, mnist.class_names,
                           mnist.preprocessing)  # fmt: skip
    result = train(model, bundle, TrainConfig(epochs=1, lr=1e-3, batch_size=32))
    assert result.val is not None and result.val.value > posthoc + 0.2
