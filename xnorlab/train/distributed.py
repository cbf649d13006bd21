"""Training on several processes with the semantics of one: the pieces ``training`` uses.

A run on ``W`` processes ("ranks") with global batch ``B`` computes what one process computes
with batch ``B``, up to float summation order:

* every rank draws the same shuffled order and the same augmentation for the *global* batch
  (generators seeded alike), and takes its contiguous slice of it (``slice_bounds``);
* each rank's loss is ``sum_i l_i * W / B`` over its slice; DDP averages the gradients over the
  ranks, so the update follows ``sum_i l_i / B``, the one-process mean over the global batch;
* BatchNorm normalises with the statistics of the global batch (``GlobalBatchNorm``): torch's
  ``SyncBatchNorm`` refuses CPU tensors, so this one all-reduces ``(sum x, sum x^2, n)`` per
  channel itself and works on gloo (CPU) and nccl (GPU) alike.

The world comes from the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``); ``xnorlab.train.launch`` sets the same for its own workers.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    Sampler,
    default_collate,
)

from xnorlab.common.errors import XnorlabError

DEFAULT_TIMEOUT_S = 600.0  # a collective waits this long for its peers before failing
TIMEOUT_RANGE_S = (10.0, 86_400.0)


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 evaluates, reports progress and writes the checkpoint."""
        return self.rank == 0

    @property
    def spread(self) -> bool:
        """Whether the run spans more than this one process."""
        return self.size > 1


SINGLE = World()


class DistBackend(str, Enum):
    """The collective library: gloo for CPU tensors, nccl for CUDA ones."""

    GLOO = "gloo"
    NCCL = "nccl"

    def __str__(self) -> str:
        return str(self.value)


def _env_int(env: Mapping[str, str], key: str, default: int | None = None) -> int:
    text = env.get(key)
    if text is None or text == "":
        if default is None:
            raise XnorlabError(f"{key} is not set, but the environment names a distributed run")
        return default
    try:
        return int(text)
    except ValueError:
        raise XnorlabError(f"{key}={text!r} is not a whole number") from None


def world_from_environ(environ: Mapping[str, str] | None = None) -> World | None:
    """The world torchrun (or ``launch``) describes in the environment; None outside one."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env and "RANK" not in env:
        return None
    size = _env_int(env, "WORLD_SIZE")
    rank = _env_int(env, "RANK")
    local_rank = _env_int(env, "LOCAL_RANK", default=rank)
    if size < 1 or not 0 <= rank < size or local_rank < 0:
        raise XnorlabError(f"RANK={rank}, WORLD_SIZE={size}, LOCAL_RANK={local_rank} do not fit")
    missing = [key for key in ("MASTER_ADDR", "MASTER_PORT") if size > 1 and not env.get(key)]
    if missing:
        raise XnorlabError(f"{' and '.join(missing)} must be set for WORLD_SIZE={size}")
    return World(rank, size, local_rank)


def placement(world: World, device: str | None) -> tuple[torch.device, DistBackend]:
    """Device and backend of this rank: ``cuda:LOCAL_RANK`` with nccl when a GPU is asked for
    (or none is named and one is present), else CPU with gloo."""
    wants_cuda = (device is None and torch.cuda.is_available()) or (device or "") == "cuda"
    if wants_cuda:
        count = torch.cuda.device_count()
        if world.local_rank >= count:
            raise XnorlabError(
                f"nccl needs one GPU per process: local rank {world.local_rank} but "
                f"{count} GPU(s) here; use fewer processes per machine or --device cpu"
            )
        return torch.device("cuda", world.local_rank), DistBackend.NCCL
    if device not in (None, "cpu"):
        raise XnorlabError(
            f"several processes run on 'cpu' (gloo) or 'cuda' (nccl, one GPU per process by "
            f"local rank), not {device!r}"
        )
    return torch.device("cpu"), DistBackend.GLOO


@contextmanager
def process_group(world: World, backend: DistBackend, timeout_s: float) -> Iterator[None]:
    """Join the run's process group (nothing to join for one process) and leave it on exit.

    Every collective fails after ``timeout_s`` without its peers, so a lost rank ends the run
    instead of hanging it.
    """
    if not world.spread:
        yield
        return
    if backend is DistBackend.NCCL:
        torch.cuda.set_device(world.local_rank)
    try:
        dist.init_process_group(
            str(backend),
            init_method="env://",
            rank=world.rank,
            world_size=world.size,
            timeout=dt.timedelta(seconds=timeout_s),
        )
    except (RuntimeError, ValueError) as exc:
        where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
        detail = " ".join(str(exc).split())[:160]
        raise XnorlabError(
            f"rank {world.rank} could not join the run at {where}: {detail}"
        ) from None
    try:
        yield
    finally:
        dist.destroy_process_group()


def all_sum(values: Tensor) -> Tensor:
    """Sum ``values`` over the ranks in place (unchanged outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values)
    return values


def slice_bounds(count: int, world: World) -> tuple[int, int]:
    """``[start, stop)`` of this rank's contiguous share of ``count`` items: shares differ by
    at most one item, lower ranks take the extra ones."""
    base, extra = divmod(count, world.size)
    start = world.rank * base + min(world.rank, extra)
    return start, start + base + (1 if world.rank < extra else 0)


@dataclass(frozen=True)
class BatchPart:
    """Rows ``[start, stop)`` of a global batch of ``count`` items."""

    start: int
    stop: int
    count: int


def batch_part(step: int, items: int, batch_size: int, world: World) -> BatchPart:
    """This rank's rows of global batch ``step`` (0-based) of an epoch over ``items`` items."""
    count = min(batch_size, items - step * batch_size)
    start, stop = slice_bounds(count, world)
    return BatchPart(start, stop, count)


class RankSlices(Sampler[list[int]]):
    """The global batches of ``batches``, each cut to this rank's slice."""

    def __init__(self, batches: BatchSampler, world: World) -> None:
        self.batches, self.world = batches, world

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            start, stop = slice_bounds(len(batch), self.world)
            yield batch[start:stop]

    def __len__(self) -> int:
        return len(self.batches)


def _collate_or_none(items: list[Any]) -> Any:
    """``default_collate``, or None for an empty slice (a short last batch on many ranks)."""
    return default_collate(items) if items else None


def rank_loader(
    dataset: Dataset[Any], batch_size: int, generator: torch.Generator, world: World
) -> DataLoader[Any]:
    """A shuffling loader that yields this rank's slice of each global batch (None if empty).

    It builds the very sampler ``DataLoader(shuffle=True, generator=generator)`` builds and
    hands the loader the same generator, so the generator is drawn in the same order as in a
    one-process run: every rank and the single process see the same global batches.
    """
    order = RandomSampler(dataset, generator=generator)  # type: ignore[arg-type]
    batches = BatchSampler(order, batch_size, drop_last=False)
    return DataLoader(
        dataset,
        batch_sampler=RankSlices(batches, world),
        generator=generator,
        collate_fn=_collate_or_none,
    )


class _GlobalSum(torch.autograd.Function):
    """``sum over ranks``, differentiable: the gradient of a sum is the sum of the gradients."""

    @staticmethod
    def forward(ctx: Any, local: Tensor) -> Tensor:
        return all_sum(local.clone())

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return all_sum(grad.clone())


class GlobalBatchNorm(nn.Module):
    """A BatchNorm layer that, in training, normalises with the statistics of the global
    batch; in eval it is the wrapped layer itself (running statistics).

    Per channel ``c`` over all ranks' items ``i`` (and positions): ``n = sum 1``,
    ``mean = sum x / n``, ``var = sum x^2 / n - mean^2`` (biased, for normalising; sums in
    float64, so the difference of squares loses nothing at float32 precision),
    ``y = (x - mean) / sqrt(var + eps) * weight + bias``; the running variance takes the
    unbiased ``var * n / (n - 1)``, as ``nn.BatchNorm`` does. Autograd through the
    differentiable global sum gives the global-batch gradient.
    """

    def __init__(self, layer: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        self.layer = layer
        self.train(layer.training)

    def forward(self, x: Tensor) -> Tensor:
        layer = self.layer
        if not self.training:
            out: Tensor = layer(x)
            return out
        dims = [0, *range(2, x.dim())]
        wide = x.double()
        local = torch.cat(
            [wide.sum(dims), wide.square().sum(dims), wide.new_tensor([x.numel() // x.shape[1]])]
        )
        total: Tensor = _GlobalSum.apply(local)
        channels = x.shape[1]
        n = total[-1].detach()  # a count: no gradient
        if float(n) < 2:
            raise ValueError("Expected more than 1 value per channel when training")
        mean = total[:channels] / n
        var = (total[channels : 2 * channels] / n - mean.square()).clamp_min(0)
        self._update_running(mean.detach(), var.detach() * n / (n - 1))
        shape = [1, channels] + [1] * (x.dim() - 2)
        scaled = ((wide - mean.view(shape)) * torch.rsqrt(var + layer.eps).view(shape)).to(x.dtype)
        if layer.weight is not None:
            scaled = scaled * layer.weight.view(shape)
        if layer.bias is not None:
            scaled = scaled + layer.bias.view(shape)
        return scaled

    @torch.no_grad()
    def _update_running(self, mean: Tensor, unbiased_var: Tensor) -> None:
        layer = self.layer
        if not layer.track_running_stats or layer.running_mean is None:
            return
        assert layer.running_var is not None and layer.num_batches_tracked is not None
        layer.num_batches_tracked.add_(1)
        momentum = layer.momentum
        factor = 1.0 / float(layer.num_batches_tracked) if momentum is None else momentum
        layer.running_mean.mul_(1 - factor).add_(mean.to(layer.running_mean.dtype), alpha=factor)
        layer.running_var.mul_(1 - factor).add_(
            unbiased_var.to(layer.running_var.dtype), alpha=factor
        )


_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@contextmanager
def global_batch_norm(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every BatchNorm child of ``model`` is wrapped in ``GlobalBatchNorm``
    (same parameters and buffers); on exit the model holds its own layers again, so saving,
    tracing and evaluating see the model unchanged."""
    swaps: list[tuple[nn.Module, str, nn.Module]] = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, _BATCH_NORMS)
    ]
    for parent, name, child in swaps:
        setattr(parent, name, GlobalBatchNorm(child))  # type: ignore[arg-type]
    try:
        yield model
    finally:
        for parent, name, child in reversed(swaps):
            setattr(parent, name, child)


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DDP (gradients averaged over the ranks during backward)."""
    ids: Sequence[int] | None = [device.index or 0] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def check_batch(batch_size: int, world_size: int) -> None:
    """Every rank needs at least one item of each full global batch."""
    if batch_size < world_size:
        raise XnorlabError(
            f"a batch of {batch_size} cannot be shared by {world_size} processes: each needs "
            "at least one item; raise --batch-size or use fewer processes"
        )
