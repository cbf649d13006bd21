"""``deploy(model)``: the engine's fast path for a whole binarized model, equal to the torch
simulation, with XNOR conv -> BatchNorm [-> clamp] chains fused into one engine call."""

from __future__ import annotations

import copy
import io
import threading
from collections.abc import Callable

import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

import xnorlab
from xnorlab import engine
from xnorlab.binary.layers import BinConv2d
from xnorlab.binary.modes import Backend, Mode
from xnorlab.binary.surgery import binarize_model
from xnorlab.runtime.deploy import DeployReport, deploy_report
from xnorlab.runtime.fused import AffineClamp, EngineChain, EngineMaxPool2d, FusedXnorConv
from xnorlab.runtime.integration import ChannelsLastInput

SUPPORTED_ISAS = engine.info()["supported_isas"]

pytestmark = pytest.mark.skipif(
    engine.info()["backend"] != "native", reason="native engine not in use"
)


def randomize_batchnorms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so folding them is tested."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            module.weight.data.copy_(torch.randn(n, generator=gen) * 0.5 + 1.0)
            module.bias.data.copy_(torch.randn(n, generator=gen) * 0.2)
    return model


class Block(nn.Module):
    """conv -> BN -> ReLU -> conv -> BN, plus the input, then Hardtanh (a residual block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)
        self.act = nn.Hardtanh()

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.act(out + x)


def small_net() -> nn.Module:
    return randomize_batchnorms(
        nn.Sequential(
            nn.Conv2d(3, 24, 3, padding=1),
            nn.BatchNorm2d(24),
            nn.ReLU(),
            nn.Conv2d(24, 70, 3, stride=2, padding=1),
            nn.BatchNorm2d(70),
            nn.ReLU6(),
            Block(70),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(70, 40),
            nn.Linear(40, 10),
        )
    )


def assert_close(got: Tensor, expected: Tensor) -> None:
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_deploy_equals_the_simulation_and_fuses_conv_bn_act(isa: str) -> None:
    model = small_net().eval()
    binarize_model(model, "paper")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
        deployed = xnorlab.deploy(model)
        got = deployed(x)
    assert_close(got, expected)
    report = deployed.deploy_report
    assert isinstance(report, DeployReport) and report.traced and report.reason == ""
    assert report.fused == ["0+1", "3+4+5", "6.conv1+6.bn1+6.relu", "6.conv2+6.bn2+add+6.act"]
    assert sum(isinstance(m, FusedXnorConv) for m in deployed.modules()) == 3
    assert not deployed.training


def test_deploy_leaves_the_callers_model_alone_and_shares_its_weights() -> None:
    model = small_net().train()
    binarize_model(model, "paper")
    before = copy.deepcopy(model.state_dict())
    deployed = xnorlab.deploy(model)
    assert model.training
    for module in model.modules():
        if isinstance(module, BinConv2d):
            assert module.config.backend is Backend.TORCH and module.native_cache is None
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # Shared, except the float conv "0" into which BatchNorm "1" was folded (a new weight).
    params = {id(p) for p in model.parameters()}
    assert all(id(p) in params for n, p in deployed.named_parameters() if not n.startswith("0."))
    assert id(dict(deployed.named_parameters())["9.weight"]) == id(model[9].weight)
    assert not torch.equal(dict(deployed.named_parameters())["0.weight"], model[0].weight)
    assert isinstance(dict(deployed.named_modules())["9"], nn.Linear)
    with torch.no_grad():
        deployed(torch.randn(1, 3, 8, 8))
    assert model.training and all(
        m.config.backend is Backend.TORCH for m in model.modules() if isinstance(m, BinConv2d)
    )


class OnAnotherThread(nn.Module):
    """Runs ``job`` on another thread, waited for, each time its forward is called: while
    deploy traces the model holding it, the job runs during the trace. (A function: deploy's
    copy of this module calls the same one.)"""

    def __init__(self, job: Callable[[], None]) -> None:
        super().__init__()
        self.job = job

    def forward(self, x: Tensor) -> Tensor:
        thread = threading.Thread(target=self.job)
        thread.start()
        thread.join()
        return x


def test_forwards_on_another_thread_run_untraced_while_deploy_traces() -> None:
    """fx patches nn.Module for the whole process while it traces; the app measures on one
    thread while it deploys on another. A float model and the binarized model whose
    parameters the traced copy shares must give their own outputs meanwhile."""
    flt = small_net().eval()
    binary = copy.deepcopy(flt)
    binarize_model(binary, "paper")
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        expected = [flt(x), binary(x)]
    outputs: list[Tensor] = []
    errors: list[BaseException] = []

    def job() -> None:
        try:
            with torch.no_grad():
                outputs.extend(model(x) for model in (flt, binary))
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    with torch.no_grad():
        deployed = xnorlab.deploy(nn.Sequential(OnAnotherThread(job), binary))
    assert errors == [] and len(outputs) == 2
    assert all(torch.equal(got, want) for got, want in zip(outputs, expected, strict=True))
    assert deployed.deploy_report.traced and deployed.deploy_report.fused
    with torch.no_grad():
        assert_close(deployed(x), expected[1])


def test_two_threads_deploying_at_once_both_trace_and_fuse() -> None:
    """The first trace pauses inside its model until the second thread's trace is inside its
    own (or 1 s passed): with one trace at a time the second waits, and both fuse."""
    second_inside, first_done = threading.Event(), threading.Event()

    def first_job() -> None:
        second_inside.wait(timeout=1.0)

    def second_job() -> None:
        second_inside.set()
        first_done.wait(timeout=1.0)

    models = []
    for job in (first_job, second_job):
        binary = small_net().eval()
        binarize_model(binary, "paper")
        models.append(nn.Sequential(OnAnotherThread(job), binary))
    reports: list[DeployReport | None] = [None, None]

    def deploy_second() -> None:
        reports[1] = deploy_report(xnorlab.deploy(models[1]))

    second = threading.Thread(target=deploy_second)

    def first_job_starting_the_second() -> None:
        second.start()
        first_job()

    models[0][0].job = first_job_starting_the_second
    reports[0] = deploy_report(xnorlab.deploy(models[0]))
    first_done.set()
    second.join(timeout=60)
    assert not second.is_alive()
    for report in reports:
        assert report is not None and report.traced and report.reason == "", report
        assert report.fused == ["1.0+1.1", "1.3+1.4+1.5", "1.6.conv1+1.6.bn1+1.6.relu",
                                "1.6.conv2+1.6.bn2+add+1.6.act"]  # fmt: skip


class Untraceable(nn.Module):
    """A forward branching on a tensor value: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.body = small_net()

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.body(x)
        return out if bool(x.sum() > -1e9) else -out


def test_a_model_fx_cannot_trace_is_deployed_unfused_and_says_so(isa: str) -> None:
    model = Untraceable().eval()
    binarize_model(model, "paper")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
        deployed = xnorlab.deploy(model)
        got = deployed(x)
    assert_close(got, expected)
    report = deployed.deploy_report
    assert not report.traced and report.fused == [] and "torch.fx could not trace" in report.reason
    layers = [m for m in deployed.modules() if isinstance(m, BinConv2d)]
    assert layers and all(m.config.backend is Backend.NATIVE for m in layers)
    xnor = [m for m in layers if m.config.mode is Mode.XNOR]
    assert xnor and all(m.native_cache is not None for m in xnor)  # packed at deploy time


def test_deploy_without_fusion_equals_the_simulation(isa: str) -> None:
    model = small_net().eval()
    binarize_model(model, "paper")
    x = torch.randn(1, 3, 12, 12)
    with torch.no_grad():
        expected = model(x)
        deployed = xnorlab.deploy(model, fuse=False)
        assert_close(deployed(x), expected)
    assert deployed.deploy_report.fused == []


def test_resnet18_paper_preset_deploys_fused_and_equal(isa: str) -> None:
    model = randomize_batchnorms(torchvision.models.resnet18(num_classes=10)).eval()
    binarize_model(model, "paper")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        deployed = xnorlab.deploy(model)
        got = deployed(x)
    assert_close(got, expected)
    fused = deployed.deploy_report.fused
    assert len(fused) == 20 and fused[0] == "conv1+bn1"
    assert "layer1.0.conv1+layer1.0.bn1+layer1.0.relu" in fused
    assert "layer2.0.downsample.0+layer2.0.downsample.1" in fused
    assert "layer2.0.conv2+layer2.0.bn2+add_2+layer2.0.relu" in fused
    # The stem's ReLU is the pool's clamp, applied to the pooled values (no ReLU pass).
    assert deployed.deploy_report.pools == ["relu+maxpool"]
    assert "max pools in the engine 1" in deployed.deploy_report.text()
    pool = deployed.get_submodule("maxpool")
    assert isinstance(pool, EngineMaxPool2d) and pool.bounds == (0.0, float("inf"))
    assert not any(type(m) is nn.ReLU for m in deployed.children())


def test_max_pools_the_engine_does_not_compute_stay_torchs() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        nn.Conv2d(8, 8, 3, padding=1), nn.MaxPool2d(2, dilation=2),
        nn.Conv2d(8, 8, 3, padding=1), nn.MaxPool2d(2),
    )  # fmt: skip
    binarize_model(model, {"2": "xnor", "4": "xnor"}, warn_first_last=False)
    x = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        expected = model.eval()(x)
        deployed = xnorlab.deploy(model)
        assert_close(deployed(x), expected)
    assert deployed.deploy_report.pools == ["5"]
    assert [type(m) for m in deployed.children()][1::2] == [
        nn.MaxPool2d, nn.MaxPool2d, EngineMaxPool2d
    ]  # fmt: skip


class BroadcastShortcut(nn.Module):
    """conv -> BN -> + a per-channel shortcut (broadcast over pixels) -> ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x.mean(dim=(1, 2, 3), keepdim=True)
        return self.relu(torch.add(self.bn(self.conv(x)), shortcut))


def test_a_shortcut_that_broadcasts_is_added_after_the_engine_call(isa: str) -> None:
    model = randomize_batchnorms(BroadcastShortcut()).eval()
    binarize_model(model, {"conv": "xnor"}, warn_first_last=False)
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        expected = model(x)
        deployed = xnorlab.deploy(model)
        got = deployed(x)
    assert deployed.deploy_report.fused == ["conv+bn+add+relu"]
    assert_close(got, expected)


class ConvBnBlock(nn.Module):
    """conv [-> BN] [-> + a float 1x1 projection of the input] [-> activation]."""

    def __init__(
        self, conv: nn.Conv2d, act: nn.Module | None, residual: bool, batchnorm: bool = True
    ) -> None:
        super().__init__()
        self.conv, self.act = conv, act
        self.bn = nn.BatchNorm2d(conv.out_channels) if batchnorm else None
        stride = conv.stride
        self.proj = nn.Conv2d(conv.in_channels, conv.out_channels, 1, stride) if residual else None

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.conv(x)
        out = out if self.bn is None else self.bn(out)
        if self.proj is not None:
            out = out + self.proj(x)
        return out if self.act is None else self.act(out)


@settings(max_examples=25, deadline=None)
@given(
    channels=st.integers(1, 80), out_channels=st.integers(1, 70), size=st.integers(3, 9),
    kernel=st.sampled_from([1, 3]), stride=st.integers(1, 2), bias=st.booleans(),
    act=st.sampled_from(["none", "relu", "hardtanh"]), residual=st.booleans(),
    batchnorm=st.booleans(), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_fused_conv_equals_conv_batchnorm_add_clamp(
    channels: int, out_channels: int, size: int, kernel: int, stride: int, bias: bool, act: str,
    residual: bool, batchnorm: bool, seed: int,
) -> None:  # fmt: skip
    torch.manual_seed(seed)
    conv = nn.Conv2d(channels, out_channels, kernel, stride, padding=kernel // 2, bias=bias)
    activation = {"none": None, "relu": nn.ReLU(), "hardtanh": nn.Hardtanh(-0.5, 0.7)}[act]
    block = ConvBnBlock(conv, activation, residual, batchnorm)
    model = randomize_batchnorms(block, seed).eval()
    binarize_model(model, {"conv": "xnor"}, warn_first_last=False)
    x = torch.randn(2, channels, size, size)
    with torch.no_grad():
        expected = model(x)
        deployed = xnorlab.deploy(model)
        before = engine.info()["isa"]
        try:
            for isa in SUPPORTED_ISAS:  # the isa fixture would be shared by the examples
                engine.set_isa(isa)
                assert_close(deployed(x), expected)
        finally:
            engine.set_isa(before)
    # A conv without BN, add or clamp is already one engine call: nothing to fuse.
    links = ("+bn" if batchnorm else "") + ("+add" if residual else "")
    links += "+act" if act != "none" else ""
    assert deployed.deploy_report.fused == (["conv" + links] if links else [])


class PreActivation(nn.Module):
    """The XNOR-Net order on a shared input: BN -> Hardtanh -> XNOR conv, and a second BN ->
    ReLU of the same input added to it (the input itself must stay unchanged)."""

    def __init__(self) -> None:
        super().__init__()
        self.bn, self.act = nn.BatchNorm2d(8), nn.Hardtanh()
        self.conv = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn_side, self.relu = nn.BatchNorm2d(8), nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.conv(self.act(self.bn(x)))
        return out + self.relu(self.bn_side(x)) + x


def test_batchnorms_outside_chains_become_one_multiply_add_with_a_clamp(isa: str) -> None:
    model = randomize_batchnorms(PreActivation()).eval()
    binarize_model(model, {"conv": "xnor"}, warn_first_last=False)
    x = torch.randn(2, 8, 7, 7)
    with torch.no_grad():
        expected = model(x)
        deployed = xnorlab.deploy(model)
        got = deployed(x)
    assert_close(got, expected)
    report = deployed.deploy_report
    assert report.fused == ["conv+add"] and report.affine == ["bn_side+relu"]
    # The BN -> Hardtanh that only the XNOR conv reads runs inside that conv's packing pass.
    assert report.prologues == ["bn+act>conv__add"]
    assert "fused chains 1, BatchNorms in the next conv's packing 1, as multiply-add 1" in (
        report.text()
    )
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
    assert sum(isinstance(m, AffineClamp) for m in deployed.modules()) == 1
    fused = [m for m in deployed.modules() if isinstance(m, FusedXnorConv)]
    assert len(fused) == 1 and fused[0].prologue is not None
    assert fused[0].prologue.clamp == (-1.0, 1.0)


class SharedNormalized(nn.Module):
    """BN -> Hardtanh read by the XNOR conv as its input and as its fused shortcut
    (``shortcut``), or by the conv and a later multiply (``elsewhere``): neither may become
    the conv's prologue, as the normalized tensor is needed as it is."""

    def __init__(self, reader: str) -> None:
        super().__init__()
        self.reader = reader
        self.bn, self.act = nn.BatchNorm2d(8), nn.Hardtanh()
        self.conv = nn.Conv2d(8, 8, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        normalized = self.act(self.bn(x))
        out: Tensor = self.conv(normalized)
        if self.reader == "shortcut":
            return out + normalized
        return out * normalized.mean()


class PlainPreActivation(nn.Module):
    """BN -> ReLU6 -> XNOR conv with nothing after the conv: the conv alone becomes fused."""

    def __init__(self) -> None:
        super().__init__()
        self.bn, self.act = nn.BatchNorm2d(8), nn.ReLU6()
        self.conv = nn.Conv2d(8, 4, 3, stride=2, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.conv(self.act(self.bn(x)))
        return out


@pytest.mark.parametrize("reader", ["shortcut", "elsewhere"])
def test_a_batchnorm_read_elsewhere_too_stays_a_multiply_add(isa: str, reader: str) -> None:
    model = randomize_batchnorms(SharedNormalized(reader)).eval()
    binarize_model(model, {"conv": "xnor"}, warn_first_last=False)
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        expected = model(x)
        deployed = xnorlab.deploy(model)
        assert_close(deployed(x), expected)
    report = deployed.deploy_report
    assert report.prologues == [] and report.affine == ["bn+act"]


def test_a_plain_xnor_conv_takes_the_batchnorm_before_it(isa: str) -> None:
    model = randomize_batchnorms(PlainPreActivation()).eval()
    binarize_model(model, {"conv": "xnor"}, warn_first_last=False)
    for size in (7, 1):  # one pixel: NCHW and NHWC memory at once
        x = torch.randn(3, 8, size, size)
        with torch.no_grad():
            expected = model(x)
            deployed = xnorlab.deploy(model)
            assert_close(deployed(x), expected)
    report = deployed.deploy_report
    assert report.prologues == ["bn+act>conv"] and report.affine == [] and report.fused == []
    fused = [m for m in deployed.modules() if isinstance(m, FusedXnorConv)]
    assert len(fused) == 1 and fused[0].prologue is not None
    assert fused[0].prologue.clamp == (0.0, 6.0)


def test_affine_clamp_equals_batchnorm_then_clamp() -> None:
    bn = randomize_batchnorms(nn.Sequential(nn.BatchNorm2d(5)))[0].eval()
    x = torch.randn(3, 5, 4, 4).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        for bounds in (None, (-1.0, 1.0), (0.0, float("inf"))):
            expected = bn(x) if bounds is None else bn(x).clamp(*bounds)
            got = AffineClamp(bn, bounds)(x)
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
            assert got.is_contiguous(memory_format=torch.channels_last)


def test_the_report_says_why_a_model_was_not_fused() -> None:
    assert DeployReport(reason="torch.fx could not trace").text() == (
        "deploy: not fused, torch.fx could not trace"
    )
    all_float = binarized_small_net("float")
    assert xnorlab.deploy(all_float).deploy_report.text() == (
        "deploy: not fused, no layer is an XNOR conv (nothing runs fused)"
    )
    paper = binarized_small_net("paper")
    assert xnorlab.deploy(paper, fuse=False).deploy_report.text() == (
        "deploy: not fused, fusion switched off"
    )


def binarized_small_net(preset: str) -> nn.Module:
    model = small_net().eval()
    binarize_model(model, preset, warn_first_last=False)
    return model


def test_later_forwards_take_the_prepared_engine_call_and_equal_the_first(isa: str) -> None:
    model = randomize_batchnorms(PreActivation()).eval()
    binarize_model(model, {"conv": "xnor"}, warn_first_last=False)
    x = torch.randn(2, 8, 7, 7)
    with torch.no_grad():
        deployed = xnorlab.deploy(model)
        first = deployed(x)
        fused = next(m for m in deployed.modules() if isinstance(m, FusedXnorConv))
        assert list(fused._prepared) == [torch.Size((2, 8, 7, 7))]
        assert torch.equal(deployed(x), first)
        assert torch.equal(deployed(x.double()).float(), first)  # not prepared: the facade


def binarized_resnet18() -> nn.Module:
    """torchvision resnet18 (10 classes, seeded, BatchNorms randomized), paper preset."""
    torch.manual_seed(0)
    model = randomize_batchnorms(torchvision.models.resnet18(num_classes=10)).eval()
    binarize_model(model, "paper", warn_first_last=False)
    return model


def test_resnet_blocks_run_as_one_engine_chain_equal_to_the_calls_one_by_one(isa: str) -> None:
    model = binarized_resnet18()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        chained = xnorlab.deploy(model)
        unchained = xnorlab.deploy(model, chain=False)
        expected = unchained(x)
        first, second = chained(x), chained(x)  # the convs one by one, then the chain
        with engine.profile() as records:
            chained(x)
    assert torch.equal(first, expected) and torch.equal(second, expected)
    report = chained.deploy_report
    assert report.chains == [
        "layer1_0_conv1__layer1_0_bn1__layer1_0_relu.."
        "layer4_1_conv2__layer4_1_bn2__add_7__layer4_1_relu (19 convs)"
    ]
    assert report.chained_convs == 19 and "19 convs in 1 engine chain(s)" in report.text()
    assert unchained.deploy_report.chains == []
    assert len(records) == 19  # one profile record per conv of the chain
    (chain,) = [m for m in chained.modules() if isinstance(m, EngineChain)]
    assert len(chain.convs) == 19
    assert chain.wiring[:2] == ((0, None), (1, 0))  # layer1.0: conv1 on the input, conv2 adds it
    assert not any(isinstance(m, EngineChain) for m in unchained.modules())


def test_each_input_shape_gets_its_own_chain() -> None:
    model = binarized_small_net("paper")
    inputs = [torch.randn(2, 3, 16, 16), torch.randn(1, 3, 12, 20), torch.randn(2, 3, 16, 16)]
    with torch.no_grad():
        deployed = xnorlab.deploy(model)
        unchained = xnorlab.deploy(model, chain=False)
        for x in inputs * 2:
            assert torch.equal(deployed(x), unchained(x))
    (chain,) = [m for m in deployed.modules() if isinstance(m, EngineChain)]
    assert sorted(tuple(shape) for shape in chain._chains) == [(1, 24, 12, 20), (2, 24, 16, 16)]
    assert all(native is not None for native in chain._chains.values())


def test_a_deployed_chain_can_keep_the_pools_threads() -> None:
    model = binarized_small_net("paper")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        deployed = xnorlab.deploy(model)
        (chain,) = [m for m in deployed.modules() if isinstance(m, EngineChain)]
        expected = [deployed(x), deployed(x)]
        (native,) = chain._chains.values()
        assert chain.adaptive_threads is None and native is not None and native.adaptive_threads
        chain.adaptive_threads = False
        assert chain._chains == {}  # made again with the setting
        assert torch.equal(deployed(x), expected[0]) and torch.equal(deployed(x), expected[1])
        (native,) = chain._chains.values()
        assert native is not None and native.adaptive_threads is False


def test_a_deployed_model_survives_copies_and_pickles() -> None:
    """The channels_last input is a node of the graph (a GraphModule copy drops forward
    hooks; unpickling traces the code again): copies compute what the original does, the
    float stem in the same memory format, bit for bit, and keep the deploy report."""
    model = binarized_resnet18()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        deployed = xnorlab.deploy(model)
        expected = deployed(x)
        buffer = io.BytesIO()
        torch.save(deployed, buffer)
        buffer.seek(0)
        twins = [copy.deepcopy(deployed), torch.load(buffer, weights_only=False)]  # our own
        for twin in twins:
            assert isinstance(twin.get_submodule("channels_last_input"), ChannelsLastInput)
            assert deploy_report(twin) == deployed.deploy_report
            assert torch.equal(twin(x), expected) and torch.equal(twin(x), expected)


def test_a_deployed_chain_survives_copies_and_pickles() -> None:
    model = binarized_small_net("paper")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        deployed = xnorlab.deploy(model)
        expected = deployed(x)
        deployed(x)  # the native chain exists now
        copied = copy.deepcopy(deployed)
        assert torch.equal(copied(x), expected) and torch.equal(copied(x), expected)
        buffer = io.BytesIO()
        torch.save(deployed, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=False)  # our own object, just written
        assert torch.equal(loaded(x), expected) and torch.equal(loaded(x), expected)


class Tapped(nn.Module):
    """Three XNOR conv blocks whose middle output is also returned: a chain must stop there."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(8, 8, 3, padding=1) for _ in range(3))
        self.bns = nn.ModuleList(nn.BatchNorm2d(8) for _ in range(3))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a = torch.relu(self.bns[0](self.convs[0](x)))
        b = torch.relu(self.bns[1](self.convs[1](a)))
        return self.bns[2](self.convs[2](b)), b


def test_a_chain_ends_at_an_output_read_outside_it(isa: str) -> None:
    model = randomize_batchnorms(Tapped()).eval()
    binarize_model(model, {f"convs.{i}": "xnor" for i in range(3)}, warn_first_last=False)
    x = torch.randn(1, 8, 9, 9)
    with torch.no_grad():
        deployed = xnorlab.deploy(model)
        expected = xnorlab.deploy(model, chain=False)(x)
        got = [deployed(x), deployed(x)]
    assert deployed.deploy_report.chains == [
        "convs_0__bns_0__relu..convs_1__bns_1__relu_1 (2 convs)"
    ]
    for out in got:
        assert torch.equal(out[0], expected[0]) and torch.equal(out[1], expected[1])


def test_bit_outputs_and_the_reference_engine_run_no_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    model = binarized_small_net("paper")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = xnorlab.deploy(model, chain=False)(x)
        linked = xnorlab.deploy(model, bit_outputs=True)
        assert linked.deploy_report.chains == [] and linked.deploy_report.bit_outputs
        chained = xnorlab.deploy(model)
        (chain,) = [m for m in chained.modules() if isinstance(m, EngineChain)]
        monkeypatch.setattr("xnorlab.engine.prepared.native_module", lambda: None)
        assert_close(chained(x), expected)  # the reference engine: the convs one by one
        assert chain._chains == {torch.Size((2, 24, 16, 16)): None}
