"""Training an ensemble: member seeds, bootstrap resamples, cancel, members spread over ranks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from xnorlab.binary.modes import Mode
from xnorlab.common.errors import XnorlabError
from xnorlab.data.datasets import load_dataset
from xnorlab.models.ensemble import BinaryEnsemble, ensemble_info
from xnorlab.models.spec import load_model_spec
from xnorlab.train.ensemble import (
    EnsemblePlan,
    bootstrap_indices,
    member_bundle,
    rank_members,
    train_ensemble,
    train_ensemble_spread,
)
from xnorlab.train.training import KeepEpoch, TrainConfig

QUICK = TrainConfig(epochs=1, max_train_items=96, batch_size=32)


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    return load_dataset("digits")


def test_bootstrap_is_seeded_with_replacement() -> None:
    drawn = bootstrap_indices(1000, 7)
    assert np.array_equal(drawn, bootstrap_indices(1000, 7))
    assert not np.array_equal(drawn, bootstrap_indices(1000, 8))
    assert drawn.min() >= 0 and drawn.max() < 1000 and len(drawn) == 1000
    assert 550 < len(set(drawn.tolist())) < 720  # about 1 - 1/e of the items appear


def test_member_bundle_resamples_only_the_training_split(digits) -> None:  # type: ignore[no-untyped-def]
    plan = EnsemblePlan("lenet", 2, bagging=True)
    first, second = member_bundle(digits, plan, 0), member_bundle(digits, plan, 1)
    assert len(first.train) == len(digits.train) and first.val is digits.val
    assert first.train.indices != second.train.indices
    assert member_bundle(digits, EnsemblePlan("lenet", 2), 0) is digits


def test_ranks_share_the_members() -> None:
    assert [rank_members(5, r, 2) for r in range(2)] == [[0, 2, 4], [1, 3]]


@pytest.mark.parametrize(
    "plan",
    [
        EnsemblePlan("lenet", 0),
        EnsemblePlan("lenet", 65),
        EnsemblePlan("lenet", 2, recipe=TrainConfig(keep=KeepEpoch.BEST)),
        EnsemblePlan("lenet", 2, recipe=TrainConfig(train_on_all=True)),
    ],
)
def test_plans_that_cannot_train_are_refused(plan: EnsemblePlan) -> None:
    with pytest.raises(XnorlabError):
        plan.validate()


def test_train_ensemble_writes_a_loadable_ensemble(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = EnsemblePlan("lenet", 2, recipe=TrainConfig(**{**QUICK.__dict__, "seed": 3}),
                        data="digits")  # fmt: skip
    result = train_ensemble(plan, digits, tmp_path / "ens.pt")
    assert not result.cancelled and [c["seed"] for c in result.member_cards] == [3, 4]
    loaded = load_model_spec(str(tmp_path / "ens.pt"))
    assert isinstance(loaded.model, BinaryEnsemble) and len(loaded.model.members) == 2
    assert loaded.modes["members.1.conv2"] is Mode.XNOR
    assert loaded.modes["members.1.conv1"] is Mode.FLOAT
    info = ensemble_info(loaded.card)
    assert info is not None and info.seeds == (3, 4) and not info.bagging
    assert all(acc is not None for acc in info.member_accuracies)
    a, b = (p.detach() for p in (loaded.model.members[0].conv1.weight,
                                 loaded.model.members[1].conv1.weight))  # fmt: skip
    assert not torch.equal(a, b)  # different seeds, different members


def test_cancel_keeps_the_finished_members(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = EnsemblePlan("lenet", 3, recipe=QUICK, data="digits")
    calls = [0]

    def cancel_in_second_member() -> bool:
        calls[0] += 1
        return calls[0] > 4  # 3 batches of member 1 pass, member 2 is cancelled

    result = train_ensemble(plan, digits, tmp_path / "ens.pt", None, cancel_in_second_member)
    assert result.cancelled and len(result.member_cards) == 1
    loaded = load_model_spec(str(tmp_path / "ens.pt"))
    assert loaded.arch == "ensemble-lenet-1"


@pytest.mark.slow
def test_members_spread_over_two_processes_match_one(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = EnsemblePlan("lenet", 2, recipe=QUICK, data="digits")
    code, spread = train_ensemble_spread(plan, digits, tmp_path / "two.pt", 2, announce=False)
    assert code == 0 and not spread.cancelled and spread.processes == 2
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the two ranks (one core each): the same float sums
    try:
        one = train_ensemble(plan, digits, tmp_path / "one.pt")
    finally:
        torch.set_num_threads(threads)
    a = load_model_spec(str(tmp_path / "two.pt")).model
    b = load_model_spec(str(tmp_path / "one.pt")).model
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, msg=name)
    assert [c["seed"] for c in spread.member_cards] == [c["seed"] for c in one.member_cards]
    assert not list(tmp_path.glob(".xnorlab-ensemble-*"))  # the parts are gone
