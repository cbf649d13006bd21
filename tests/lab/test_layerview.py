"""layerview's table statistics: the never-negative input flag."""

from __future__ import annotations

import torch
from torch import nn

from xnorlab.binary.surgery import wrap_layers
from xnorlab.lab.layerview import compute_table_stats


def test_a_layer_right_after_a_relu_is_flagged_only_with_data() -> None:
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
        nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3),
    )  # fmt: skip
    wrap_layers(net)
    net.eval()
    x = torch.randn(6, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    rows = compute_table_stats(net, x)
    assert {name: row.input_never_negative for name, row in rows.items()} == {
        "0": False, "2": True, "5": False,
    }  # fmt: skip
    assert all(row.input_never_negative is None for row in compute_table_stats(net).values())
    assert not net.training  # restored
