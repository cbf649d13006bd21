"""Ensemble evaluation checked against hand computation.

Three items (one-hot inputs, so a bias-free Linear's column j is its logits on item j), labels
0, 2, 0, three classes. Members' logits per item:

    item 0 (label 0): m1 [0, 10, 0]    m2 [1, 0, 0]    m3 [1, 0, 0]
    item 1 (label 2): m1 [2, 0, 1.9]   m2 [0, 2, 1.9]  m3 [0, 0, 0]
    item 2 (label 0): m1 [3, 0, 0]     m2 [3, 0, 0]    m3 [3, 0, 0]

Item 0: the majority (m2, m3) is right, but m1's confident wrong vote outweighs them in the
mean softmax: class 1 gets (0.99991 + 2 * 0.21194) / 3 = 0.4746 > class 0's
(0.00005 + 2 * 0.57612) / 3 = 0.3841, so every ensemble is wrong there.
Item 1: m1 and m2 are each wrong (argmax 0 and 1; m3's tie goes to class 0), yet their mean
softmax is [0.278, 0.278, 0.443]: the ensembles of 2 and 3 are right.
Item 2: everyone is right.

Members: m1 1/3 (item 2), m2 2/3 and m3 2/3 (items 0 and 2); ensembles of the first k:
k=1 (m1) 1/3, k=2 2/3, k=3 2/3. The float model is right on items 0 and 1 and wrong on 2.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from xnorlab.measure.ensemble import accuracy_curve, evaluate_ensemble, first_k_correct
from xnorlab.measure.intervals import Accuracy
from xnorlab.measure.memory import model_memory
from xnorlab.measure.timing import RunPlan
from xnorlab.models.ensemble import BinaryEnsemble

LABELS = torch.tensor([0, 2, 0])
ITEMS = TensorDataset(torch.eye(3), LABELS)
M1 = [[0.0, 10.0, 0.0], [2.0, 0.0, 1.9], [3.0, 0.0, 0.0]]
M2 = [[1.0, 0.0, 0.0], [0.0, 2.0, 1.9], [3.0, 0.0, 0.0]]
M3 = [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [3.0, 0.0, 0.0]]
FLOAT = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]  # right on items 0, 1


def _fixed(logits_per_item: list[list[float]]) -> nn.Linear:
    layer = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(logits_per_item).T)  # column j = logits on item j
    return layer


def _ensemble() -> BinaryEnsemble:
    return BinaryEnsemble([_fixed(M1), _fixed(M2), _fixed(M3)])


def test_first_k_vote_by_hand() -> None:
    logs = [torch.log_softmax(torch.tensor(m), dim=1) for m in (M1, M2, M3)]
    correct = first_k_correct(logs, LABELS)
    assert [c.tolist() for c in correct] == [
        [False, False, True],  # m1 alone
        [False, True, True],  # m1 + m2: item 1 right although both are wrong on it
        [False, True, True],  # item 0 wrong although the majority (m2, m3) is right
    ]


def test_the_forward_votes_as_the_curve() -> None:
    ensemble = _ensemble()
    with torch.no_grad():
        votes = ensemble(torch.eye(3)).argmax(1)
    assert votes.tolist() == [1, 2, 0]  # item 0: m1's confident vote wins the mean softmax


def test_accuracy_curve_by_hand() -> None:
    curve = accuracy_curve(_ensemble(), _fixed(FLOAT), ITEMS)
    # m1: item 2; m2: items 0, 2; m3: items 0, 2 (its tie on item 1 goes to class 0)
    assert curve.members == (Accuracy(1, 3), Accuracy(2, 3), Accuracy(2, 3))
    assert [p.candidate for p in curve.ensembles] == [Accuracy(1, 3), Accuracy(2, 3),
                                                       Accuracy(2, 3)]  # fmt: skip
    assert curve.float_accuracy == Accuracy(2, 3)
    # k=1: float alone right on items 0 and 1, m1 alone on item 2
    assert (curve.ensembles[0].only_baseline, curve.ensembles[0].only_candidate) == (2, 1)
    # k=2, 3: float alone right on item 0, the ensemble alone on item 2
    for pair in curve.ensembles[1:]:
        assert (pair.only_baseline, pair.only_candidate) == (1, 1)
        assert pair.cost == 0.0 and pair.p_value == 1.0
    assert curve.sample.count == 3


def test_evaluation_budgets() -> None:
    ensemble, floating = _ensemble(), _fixed(FLOAT)
    plan = RunPlan(warmup=1, min_runs=6, max_runs=12, min_total_s=0.0, block=1)
    result = evaluate_ensemble(ensemble, floating, ITEMS, plan=plan)
    member_bytes = model_memory(_fixed(M1)).packed_bytes
    assert [p.packed_bytes for p in result.points] == [member_bytes * k for k in (1, 2, 3)]
    assert result.float_packed_bytes == member_bytes
    within = result.within_memory
    assert within is not None and within.members == 1  # one float member = the float model
    assert all(p.latency.runs >= 6 and p.latency_ratio.rounds >= 6 for p in result.points)
    fast = result.within_latency
    assert fast is None or fast.latency_ratio.median <= 1.0
    payload = result.to_json()
    assert payload["within_memory"] == 1 and len(payload["ensembles"]) == 3
