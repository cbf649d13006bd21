"""LabSession without Qt: model/data state, mode changes, undo/redo, events, safe failure."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import xnorlab.lab.session as session_module
from xnorlab.binary.layers import BinConv2d
from xnorlab.binary.modes import InputScaling, Mode
from xnorlab.common.errors import XnorlabError
from xnorlab.common.signals import Signal
from xnorlab.data.bundle import DatasetBundle
from xnorlab.data.images import Preprocessing
from xnorlab.data.sampling import dataset_labels
from xnorlab.lab.layerview import MAX_VIEW_BATCH
from xnorlab.lab.session import LabSession, snapshot_model, whole_shares
from xnorlab.models.demo import build_demo
from xnorlab.models.loaded import LoadedModel


def tiny_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.Flatten(),
        nn.Linear(6 * 8 * 8, 5),
        nn.Linear(5, 3),
    )


def make_bundle(shape: tuple[int, int, int] = (1, 8, 8), n: int = 20) -> DatasetBundle:
    """``n`` random validation samples of ``shape`` in 3 classes, an empty train split."""
    inputs = torch.randn(n, *shape)
    labels = torch.arange(n) % 3
    empty = TensorDataset(torch.empty(0, *shape), torch.empty(0, dtype=torch.long))
    channels, height, width = shape
    prep = Preprocessing(channels, height, width, mean=(0.5,) * channels, std=(0.5,) * channels)
    return DatasetBundle("fake", empty, TensorDataset(inputs, labels), ["a", "b", "c"], prep)


class Recorder:
    def __init__(self, signal: Signal) -> None:
        self.calls: list[tuple[object, ...]] = []
        signal.connect(lambda *args: self.calls.append(args))


@pytest.fixture
def session() -> LabSession:
    lab = LabSession()
    lab.adopt(LoadedModel("tiny", tiny_net(), (1, 8, 8), ["a", "b", "c"]))
    return lab


def test_adopt_wraps_layers_and_measures_macs(session: LabSession) -> None:
    names = session.layer_names()
    assert names == ["0", "2", "4", "5"]
    assert isinstance(session.layer("0"), BinConv2d)
    assert session.macs["0"] == 8 * 8 * 4 * 1 * 9
    assert set(session.modes().values()) == {Mode.FLOAT}


def test_set_mode_changes_the_model_and_emits(session: LabSession) -> None:
    events = Recorder(session.modes_changed)
    x = torch.randn(2, 1, 8, 8)
    before = session.model(x)
    assert session.set_mode("2", "xnor") == ["2"]
    assert session.layer("2").mode is Mode.XNOR
    assert events.calls == [(["2"],)]
    assert not torch.allclose(session.model(x), before)
    assert session.set_mode("2", Mode.XNOR) == []  # no change, no event, no undo step
    assert len(events.calls) == 1


def test_undo_redo_round_trip(session: LabSession) -> None:
    session.apply_preset("paper")
    paper = session.modes()
    session.set_mode("2", "bwn")
    assert session.undo_label == "2 -> bwn"
    session.undo()
    assert session.modes() == paper
    session.undo()
    assert set(session.modes().values()) == {Mode.FLOAT}
    assert not session.can_undo
    session.redo()
    assert session.modes() == paper
    session.redo()
    assert session.modes()["2"] is Mode.BWN
    assert not session.can_redo
    session.undo()
    session.set_mode("0", "xnor")  # a new change clears the redo stack
    assert not session.can_redo


def test_presets_and_patterns(session: LabSession) -> None:
    session.apply_preset("paper")
    assert session.modes() == {"0": "float", "2": "xnor", "4": "xnor", "5": "float"}
    changed = session.apply_pattern("[45]", "bwn")
    assert sorted(changed) == ["4", "5"]
    with pytest.raises(XnorlabError, match="matches no layer"):
        session.apply_pattern("conv*", "xnor")


def test_bad_inputs_leave_state_intact(session: LabSession) -> None:
    session.set_mode("2", "xnor")
    before = session.modes()
    with pytest.raises(XnorlabError, match="unknown layer"):
        session.set_modes({"2": "float", "nope": "xnor"})
    with pytest.raises(XnorlabError, match="Mode"):
        session.set_mode("2", "ternary")
    with pytest.raises(XnorlabError, match="clip"):
        session.set_layer_config("2", clip=-1)
    assert session.modes() == before
    assert session.undo_label == "2 -> xnor"


def test_layer_config_is_undoable(session: LabSession) -> None:
    session.configure_layers(None, scaling="scalar")
    assert {session.config(n).scaling for n in session.layer_names()} == {InputScaling.SCALAR}
    session.undo()
    assert session.config("2").scaling is InputScaling.KMAP


def test_open_bad_model_keeps_state(session: LabSession, tmp_path: Path) -> None:
    session.set_mode("2", "xnor")
    model = session.model
    errors = Recorder(session.error)
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    assert session.attempt(session.open_model, str(bad)) is None
    assert len(errors.calls) == 1 and "broken.pt" in str(errors.calls[0][0])
    assert session.model is model and session.modes()["2"] is Mode.XNOR
    with pytest.raises(XnorlabError):
        session.open_model("no_such_architecture_xyz")
    assert session.model is model


def test_model_that_fails_on_its_input_shape_is_refused(session: LabSession) -> None:
    model = session.model
    with pytest.raises(XnorlabError, match="does not run"):
        session.adopt(LoadedModel("wrong", tiny_net(), (3, 8, 8)))
    assert session.model is model


def test_dataset_validation_and_samples(session: LabSession) -> None:
    with pytest.raises(XnorlabError, match="no dataset"):
        session.sample_batch(4)
    events = Recorder(session.data_changed)
    with pytest.raises(XnorlabError, match="expects"):
        session.set_dataset(make_bundle((3, 8, 8)), "rgb")
    assert session.dataset is None and not events.calls
    session.set_dataset(make_bundle(), "fake")
    inputs, labels = session.sample_batch(6)
    assert inputs.shape == (6, 1, 8, 8) and sorted(labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert session.sample_batch(6)[0] is inputs  # cached
    assert session.sample(6).info.per_class == {0: 2, 1: 2, 2: 2}
    assert len(events.calls) == 1


def test_the_view_sample_of_a_class_sorted_set_holds_every_class_in_equal_shares() -> None:
    """mnist5k's validation split is sorted by class: its first 20 items are all zeros. The
    views' sample is drawn stratified instead, and says what it holds."""
    lab = LabSession()
    lab.adopt(LoadedModel("lenet", build_demo("lenet"), (1, 28, 28), [str(d) for d in range(10)]))
    lab.open_dataset("mnist5k")
    assert set(dataset_labels(lab.dataset.val)[:20].tolist()) == {0}  # type: ignore[union-attr]
    inputs = lab.activation_inputs(MAX_VIEW_BATCH)
    assert inputs.labels is not None and inputs.count == 20
    assert Counter(inputs.labels.tolist()) == dict.fromkeys(range(10), 2)
    assert inputs.sample is not None and inputs.sample.per_class == dict.fromkeys(range(10), 2)
    assert inputs.description == "mnist5k, 20 items, seed 0, 2 per class (10 classes)"
    assert lab.activation_inputs(16).count == 10  # whole shares: one per class, not 6 x 2 + 4
    again = LabSession()
    again.adopt(LoadedModel("lenet", build_demo("lenet"), (1, 28, 28)))
    again.set_dataset(lab.dataset, "mnist5k")  # type: ignore[arg-type]
    assert torch.equal(again.activation_inputs(20).batch, inputs.batch)  # type: ignore[arg-type]


def test_whole_shares() -> None:
    assert [whole_shares(n, 10) for n in (1, 9, 10, 16, 20, 29)] == [1, 9, 10, 10, 20, 20]
    assert whole_shares(7, 0) == 7


def test_new_model_with_other_shape_drops_unfitting_dataset(session: LabSession) -> None:
    session.set_dataset(make_bundle(), "fake")
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 2))
    session.adopt(LoadedModel("rgb", net, (3, 6, 6)))
    assert session.dataset is None


def test_selection(session: LabSession) -> None:
    events = Recorder(session.selection_changed)
    session.select("2")
    session.select("2")
    assert events.calls == [("2",)]
    with pytest.raises(XnorlabError):
        session.select("zzz")
    assert session.selected == "2"


def test_snapshot_shares_weights_but_not_configs(session: LabSession) -> None:
    snap = snapshot_model(session.model)
    live = session.layer("2")
    copy = dict(snap.named_modules())["2"]
    assert copy is not live and copy.weight is live.weight
    copy.configure(mode="xnor")
    assert live.mode is Mode.FLOAT
    with torch.no_grad():
        live.weight.mul_(2.0)
    assert torch.equal(copy.weight, live.weight)


def test_open_paths_routes_and_rejects(session: LabSession, tmp_path: Path) -> None:
    image = tmp_path / "digit.png"
    image.write_bytes(b"\x89PNG fake")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(XnorlabError, match="not available"):
        session.open_paths([image])  # nobody listens for images yet
    got = Recorder(session.images_dropped)
    session.open_paths([image])
    assert got.calls == [([str(image)],)]
    with pytest.raises(XnorlabError, match="unsupported"):
        session.open_paths([image, text])
    with pytest.raises(XnorlabError, match="not a file"):
        session.open_paths([tmp_path / "missing.png"])
    assert len(got.calls) == 1


def test_signal_runs_every_slot_then_reraises() -> None:
    signal = Signal("x")
    seen: list[int] = []

    def broken(value: int) -> None:
        raise RuntimeError("boom")

    signal.connect(broken)
    signal.connect(seen.append)
    with pytest.raises(RuntimeError, match="boom"):
        signal.emit(3)
    assert seen == [3]
    signal.disconnect(broken)
    with signal.blocked():
        signal.emit(4)
    signal.emit(5)
    assert seen == [3, 5]


def test_session_imports_no_qt() -> None:
    code = "import sys, xnorlab.lab.session; print('PySide6' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_default_dataset_is_requested_or_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded_specs: list[str] = []

    def fake_load(spec: str, loaded: object = None) -> DatasetBundle:
        loaded_specs.append(spec)
        return make_bundle()

    monkeypatch.setattr(session_module, "load_dataset_for", fake_load)
    model = LoadedModel("tiny", tiny_net(), (1, 8, 8), default_data="tiny-default")
    lab = LabSession()
    lab.adopt(model)  # nobody listens: the session loads the data itself
    assert loaded_specs == ["tiny-default"] and lab.dataset_spec == "tiny-default"
    other = LabSession()
    requested = Recorder(other.dataset_requested)
    other.adopt(LoadedModel("tiny", tiny_net(), (1, 8, 8), default_data="tiny-default"))
    assert requested.calls == [("tiny-default",)] and other.dataset is None
    assert loaded_specs == ["tiny-default"]  # the listener (the GUI) loads it, not the session


def test_dropped_model_is_requested_when_someone_listens(
    session: LabSession, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "net.pt"
    checkpoint.write_bytes(b"whatever: the listener loads it")
    requested = Recorder(session.model_requested)
    model = session.model
    session.open_paths([checkpoint])
    assert requested.calls == [(str(checkpoint),)]
    assert session.model is model  # nothing loaded synchronously


def test_mode_lock_refuses_every_config_change_and_keeps_history(session: LabSession) -> None:
    names = session.layer_names()
    session.set_mode(names[1], "xnor")
    session.set_mode(names[2], "bwn")
    session.undo()
    locks = Recorder(session.lock_changed)
    modes, undo, redo = session.modes(), session.undo_label, session.redo_label
    session.lock_modes("a training run uses the current modes")
    attempts = [
        lambda: session.set_mode(names[0], "xnor"),
        lambda: session.apply_preset("bwn"),
        lambda: session.apply_pattern("*", "float"),
        lambda: session.configure_layers(None, scaling="scalar"),
        lambda: session.set_layer_config(names[1], pad_mode="zero"),
        session.undo,
        session.redo,
    ]
    for attempt in attempts:
        with pytest.raises(XnorlabError, match="a training run uses the current modes"):
            attempt()
    assert session.modes() == modes
    assert (session.undo_label, session.redo_label) == (undo, redo)  # nothing popped
    session.unlock_modes()
    assert locks.calls == [("a training run uses the current modes",), ("",)]
    assert session.redo() == [names[2]]
    with pytest.raises(XnorlabError, match="reason"):
        session.lock_modes("")


def test_last_change_names_undo_and_redo_too(session: LabSession) -> None:
    session.apply_preset("xnor")
    assert session.last_change == "preset xnor"
    session.undo()
    assert session.last_change == "undo preset xnor"
    session.redo()
    assert session.last_change == "redo preset xnor"


def test_weights_changed_in_place_are_named_until_another_model(session: LabSession) -> None:
    assert session.display_name == "tiny"
    session.mark_weights_changed("fine-tuned")
    assert session.display_name == "tiny (fine-tuned)"
    assert session.model_name == "tiny"  # still the spec that reopens the file
    session.adopt(LoadedModel("other", tiny_net(), (1, 8, 8)))
    assert session.display_name == "other"


def test_model_whose_forward_raises_anything_is_refused(session: LabSession) -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise AssertionError("custom code of a loaded file")

    model = session.model
    with pytest.raises(XnorlabError, match="does not run"):
        session.adopt(LoadedModel("broken", Broken(), (1, 8, 8)))
    assert session.model is model and session.model_name == "tiny"


class TinyAttention(nn.Module):
    """A linear embedding, one attention block (whose ``out_proj`` is used by its weight, not
    its forward) and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 16)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x.flatten(1, 2))  # (N, 1, 8, 8) -> (N, 8 tokens, 8) -> 16 features
        mixed, _ = self.attn(tokens, tokens, tokens)
        return self.head(mixed.mean(dim=1))


def test_fixed_layers_are_named_with_their_reason_and_never_switch() -> None:
    lab = LabSession()
    lab.adopt(LoadedModel("attn", TinyAttention(), (1, 8, 8)))
    assert lab.layer_names() == ["embed", "head"]
    [(info, reason)] = lab.fixed_layers()
    assert info.name == "attn.out_proj" and info.kind == "linear"
    assert info.weight_shape == (16, 16) and info.params == 16 * 16 + 16
    assert "MultiheadAttention" in reason
    with pytest.raises(XnorlabError):
        lab.set_mode("attn.out_proj", "xnor")
