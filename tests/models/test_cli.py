"""``xnorlab train / eval / predict``: a real round trip, and one clear line on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xnorlab.cli.main import main


def _digit_png(path: Path) -> Path:
    pixels = np.full((48, 40), 250, dtype=np.uint8)
    pixels[8:40, 18:23] = 10  # a dark "1" on light paper
    Image.fromarray(pixels).save(path)
    return path


def _one_error_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"xnorlab {command}: error: "), err
    return err[0]


def test_train_eval_predict_round_trip(tmp_path: Path, capsys) -> None:
    out = tmp_path / "tiny.pt"
    code = main(["train", "lenet", "--data", "digits", "--modes", "paper", "--epochs", "1",
                 "--max-items", "96", "--out", str(out)])  # fmt: skip
    assert code == 0 and out.exists()
    printed = capsys.readouterr().out
    assert "kept epoch 1 (last epoch of 1" in printed and "val top-1" in printed
    assert main(["eval", str(out), "--json", "--max-items", "60"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["data"] == "digits" and report["count"] == 60
    assert report["modes"]["conv2"] == "xnor" and len(report["confusion"]) == 10
    assert 0.0 <= report["top1"] <= report["top5"] <= 1.0
    image = _digit_png(tmp_path / "one.png")
    assert main(["predict", str(out), str(image), "--topk", "2", "--json", "--modes", "float"]) == 0
    prediction = json.loads(capsys.readouterr().out)["predictions"][0]
    assert len(prediction["top"]) == 2
    assert prediction["top"][0]["probability"] >= prediction["top"][1]["probability"]


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["eval", "missing.pt", "--data", "digits"], "does not exist"),
        (["eval", "lenet", "--data", "nowhere-data"], "unknown data"),
        (["eval", "lenet", "--data", "digits", "--modes", "half"], "neither a preset"),
        (["train", "lenet", "--data", "digits", "--out", "x.pt", "--lr", "-1"], "learning rate"),
        (["predict", "resnet1"], "arguments are required: IMAGE"),  # argparse's own check
    ],
)
def test_bad_input_exits_2_with_one_line(argv, phrase, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert phrase in _one_error_line(capsys, argv[0])


def test_predict_rejects_non_images_and_unknown_models(tmp_path: Path, capsys) -> None:
    fake = tmp_path / "photo.jpg"
    fake.write_text("definitely not a jpeg")
    assert main(["predict", "lenet", str(fake)]) == 2
    assert "not an image" in _one_error_line(capsys, "predict")
    assert main(["predict", "resnet1", str(fake)]) == 2
    assert "did you mean" in _one_error_line(capsys, "predict")
    assert main(["predict", "lenet", str(fake), "--topk", "0"]) == 2
    _one_error_line(capsys, "predict")


def _two_class_folder(root: Path) -> Path:
    for name, value in (("dark", 30), ("light", 220)):
        (root / name).mkdir(parents=True)
        for i in range(6):
            Image.new("L", (30 + i, 30), value + i).save(root / name / f"{i}.png")
    return root


def test_train_from_scratch_on_a_folder_rebuilds_the_head(tmp_path: Path, capsys) -> None:
    data = _two_class_folder(tmp_path / "data")
    out = tmp_path / "two.safetensors"
    assert main(["train", "lenet", "--data", str(data), "--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    from xnorlab.models.spec import load_model_spec

    loaded = load_model_spec(str(out))
    assert loaded.class_names == ["dark", "light"]
    assert loaded.model.get_submodule("fc4").out_features == 2
    assert main(["eval", "demo:lenet", "--data", str(data)]) == 2
    assert "not classes of the model" in _one_error_line(capsys, "eval")


def test_progress_bar_prints_epoch_lines_when_not_a_terminal() -> None:
    import io

    from xnorlab.cli.progress import ProgressBar

    stream = io.StringIO()
    bar = ProgressBar(stream)
    bar(0.1, "epoch 1/2 loss 1.0", {"train_loss": 1.0})
    bar(0.5, "epoch 1/2: val acc 0.5", {"val_acc": 0.5})
    bar(1.0, "done", {})
    bar.close()
    assert stream.getvalue().splitlines() == [" 50% epoch 1/2: val acc 0.5", "100% done"]
