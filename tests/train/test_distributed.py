"""The pieces of a run on several processes, in one process: slices, draws, BatchNorm, world."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from xnorlab.cli.main import main
from xnorlab.common.errors import XnorlabError
from xnorlab.measure.evaluate import make_loader
from xnorlab.train.distributed import (
    GlobalBatchNorm,
    World,
    batch_part,
    global_batch_norm,
    rank_loader,
    slice_bounds,
    world_from_environ,
)
from xnorlab.train.training import TrainConfig, augment_batch


@pytest.mark.parametrize("size", [2, 3, 5])
def test_slices_cover_a_batch_once_in_order_and_differ_by_at_most_one(size: int) -> None:
    for count in (1, 2, 7, 32):
        bounds = [slice_bounds(count, World(rank, size)) for rank in range(size)]
        assert bounds[0][0] == 0 and bounds[-1][1] == count
        assert all(bounds[r][1] == bounds[r + 1][0] for r in range(size - 1))
        lengths = [stop - start for start, stop in bounds]
        assert max(lengths) - min(lengths) <= 1


@pytest.mark.parametrize("size", [2, 3])
def test_every_rank_draws_the_one_process_order_and_takes_its_slice(size: int) -> None:
    items, batch = 241, 32  # a short last batch of 17, shared unevenly
    data = TensorDataset(torch.arange(items), torch.zeros(items))
    single_gen = torch.Generator().manual_seed(11)
    epochs = [[b[0] for b in make_loader(data, batch, True, single_gen)] for _ in range(2)]
    rank_gens = [torch.Generator().manual_seed(11) for _ in range(size)]
    for expected in epochs:
        loaders = [rank_loader(data, batch, rank_gens[r], World(r, size)) for r in range(size)]
        for step, slices in enumerate(zip(*loaders, strict=True)):
            parts = [batch_part(step, items, batch, World(r, size)) for r in range(size)]
            assert all(p.count == len(expected[step]) for p in parts)
            joined = torch.cat([s[0] for s in slices if s is not None])
            assert torch.equal(joined, expected[step])
    for gen in rank_gens:  # the generator is drawn as in one process: later epochs agree too
        assert torch.equal(gen.get_state(), single_gen.get_state())


def test_a_rank_with_no_rows_of_a_short_batch_gets_none() -> None:
    data = TensorDataset(torch.arange(10), torch.zeros(10))  # batches 4, 4, 2 on 3 ranks
    last = list(rank_loader(data, 4, torch.Generator().manual_seed(0), World(2, 3)))[-1]
    assert last is None and batch_part(2, 10, 4, World(2, 3)).count == 2


def test_augmenting_the_slices_moves_each_image_as_the_global_batch_does() -> None:
    images = torch.randn(9, 1, 28, 28)
    config = TrainConfig(shift_px=2, rotate_deg=10, scale=0.1)
    whole = augment_batch(images, config, torch.Generator().manual_seed(4))
    size = 3
    pieces = []
    for rank in range(size):
        part = batch_part(0, 9, 9, World(rank, size))
        gen = torch.Generator().manual_seed(4)
        pieces.append(augment_batch(images[part.start : part.stop], config, gen, part))
    assert torch.allclose(torch.cat(pieces), whole, atol=1e-6)


@pytest.mark.parametrize(
    ("layer", "shape"),
    [(nn.BatchNorm2d(4), (8, 4, 5, 5)), (nn.BatchNorm1d(6, momentum=None), (8, 6))],
)
def test_global_batch_norm_alone_is_batch_norm(layer: nn.Module, shape: tuple[int, ...]) -> None:
    """Without peers the global batch is the local one: same output, gradients, statistics."""
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)  # type: ignore[operator]
        layer.bias.uniform_(-0.5, 0.5)  # type: ignore[operator]
    reference = copy.deepcopy(layer)
    x = (torch.randn(shape) * 3 + 1).requires_grad_()
    grad = torch.randn(shape)
    for _ in range(2):  # twice: the running statistics' update follows momentum (or the mean)
        expected = reference(x)
        got = GlobalBatchNorm(layer)(x)
        assert torch.allclose(got, expected, atol=1e-5)
        for a, b in zip(
            torch.autograd.grad(got, [x, layer.weight, layer.bias], grad),
            torch.autograd.grad(expected, [x, reference.weight, reference.bias], grad),
            strict=True,
        ):
            assert torch.allclose(a, b, atol=1e-5)
    for name, buffer in reference.named_buffers():
        assert torch.allclose(getattr(layer, name), buffer, atol=1e-6), name
    layer.eval()
    assert torch.equal(GlobalBatchNorm(layer).eval()(x), layer(x))


def test_the_swap_shares_the_tensors_and_gives_the_model_back() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.BatchNorm1d(8))
    keys, bn = list(model.state_dict()), model[1]
    with global_batch_norm(model):
        assert isinstance(model[1], GlobalBatchNorm) and isinstance(model[3], GlobalBatchNorm)
        model(torch.randn(4, 1, 4, 4))
    assert model[1] is bn and list(model.state_dict()) == keys
    assert int(bn.num_batches_tracked) == 1  # the wrapped layer's own statistics moved


def test_the_world_comes_from_torchruns_environment() -> None:
    assert world_from_environ({}) is None
    env = {"RANK": "1", "WORLD_SIZE": "4", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    assert world_from_environ(env) == World(rank=1, size=4, local_rank=1)
    assert world_from_environ({**env, "LOCAL_RANK": "0"}) == World(1, 4, 0)
    for bad, phrase in [
        ({**env, "MASTER_ADDR": ""}, "MASTER_ADDR must be set"),
        ({**env, "RANK": "4"}, "do not fit"),
        ({**env, "WORLD_SIZE": "x"}, "not a whole number"),
    ]:
        with pytest.raises(XnorlabError, match=phrase):
            world_from_environ(bad)


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xnorlab train: error: "), lines
    return lines[0]


@pytest.mark.parametrize(
    ("extra", "env", "phrase"),
    [
        (["--nproc", "0"], {}, "outside 1.."),
        (["--nproc", str(4 * (os.cpu_count() or 1) + 1)], {}, "outside 1.."),
        (["--nproc", "3", "--batch-size", "2"], {}, "cannot be shared by 3 processes"),
        (["--nproc", "2", "--device", "mps"], {}, "use cpu, cuda or cuda:N"),
        (["--nproc", "2"], {"RANK": "0", "WORLD_SIZE": "1"}, "under torchrun leave it out"),
    ],
)
def test_what_cannot_run_on_several_processes_is_one_line_before_any_work(
    extra: list[str],
    env: dict[str, str],
    phrase: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "x.pt"
    assert main(["train", "lenet", "--data", "digits", "--out", str(out), *extra]) == 2
    assert phrase in _one_error_line(capsys)
    assert not out.exists()


def test_more_processes_than_gpus_is_refused(tmp_path: Path, capsys) -> None:
    nproc = str(max(2, torch.cuda.device_count() + 1))
    argv = ["train", "lenet", "--out", str(tmp_path / "x.pt"), "--nproc", nproc, "--device", "cuda"]
    assert main(argv) == 2
    # without any GPU the device itself is refused while the arguments are read
    expected = "nccl needs one GPU per process" if torch.cuda.device_count() else "has 0 GPU(s)"
    assert expected in _one_error_line(capsys)
