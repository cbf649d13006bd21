"""Totals and per-layer counts against figures computed by hand for a small net."""

from __future__ import annotations

import torch

from xnorlab.models.loaded import LoadedModel
from xnorlab.report.build import ReportData, ReportOptions, build_report

FAST = ReportOptions(sensitivity=False, latency=False, file_sizes=False)


def test_counts_match_hand_computed_figures(tiny_loaded: LoadedModel) -> None:
    modes = {"conv1": "float", "conv2": "xnor", "fc": "bwn"}
    data = ReportData("random", torch.randn(4, 1, 8, 8))
    report = build_report(tiny_loaded, modes, data, options=FAST)
    conv1, conv2, fc = report.layers
    # conv1: 4*1*3*3 = 36 weights, no bias; output 4x8x8 -> MACs 4*8*8*9 = 2304.
    assert (conv1.params, conv1.macs, conv1.binary_macs) == (36, 2304, 0)
    assert (conv1.float_bits, conv1.deployed_bits) == (36 * 32, 36 * 32)
    # conv2: 8*4*3*3 = 288 weights + 8 bias; output 8x6x6 -> MACs 8*36*36 = 10368, all binary.
    assert (conv2.params, conv2.macs, conv2.binary_macs) == (296, 10368, 10368)
    assert conv2.float_bits == 296 * 32
    assert conv2.deployed_bits == 288 * 1 + 8 * 32 + 8 * 32  # bits + alpha + bias
    assert conv2.input_shape == (4, 8, 8) and conv2.output_shape == (8, 6, 6)
    # fc (BWN): 5*72 = 360 weights + 5 bias; 360 MACs, float MACs (input is float).
    assert (fc.params, fc.macs, fc.binary_macs) == (365, 360, 0)
    assert fc.deployed_bits == 360 + 5 * 32 + 5 * 32
    totals = report.totals
    other = 4 * 4  # BatchNorm2d(4): weight, bias, running_mean, running_var
    assert totals.other_params == other
    assert totals.params == 36 + 296 + 365 + other
    assert totals.binary_params == 288 + 360
    assert totals.float_bits == 32 * (36 + 296 + 365 + other)
    deployed = 36 * 32 + (288 + 16 * 32) + (360 + 10 * 32) + other * 32
    assert totals.deployed_bits == deployed
    assert abs(totals.compression - totals.float_bits / deployed) < 1e-12
    assert totals.macs == 2304 + 10368 + 360 and totals.binary_macs == 10368
    assert abs(totals.binarized_mac_ratio - 10368 / (2304 + 10368 + 360)) < 1e-12


def test_weight_statistics_are_those_of_the_weights(tiny_loaded: LoadedModel) -> None:
    data = ReportData("random", torch.randn(4, 1, 8, 8))
    report = build_report(tiny_loaded, "xnor", data, options=FAST)
    weight = tiny_loaded.model.conv2.weight.detach()
    alpha = weight.abs().flatten(1).mean(dim=1)
    row = report.layers[1]
    assert abs(row.alpha_mean - float(alpha.mean())) < 1e-7
    assert abs(row.alpha_max - float(alpha.max())) < 1e-7
    assert row.alphas == tuple(float(a) for a in alpha)
    approx = alpha.reshape(-1, 1, 1, 1) * torch.where(weight >= 0, 1.0, -1.0)
    expected = float((weight - approx).norm() / weight.norm())
    assert abs(row.approx_error - expected) < 1e-6
    assert sum(row.weight_hist.counts) == weight.numel()
    assert sum(row.input_hist.counts) == 4 * 4 * 8 * 8
