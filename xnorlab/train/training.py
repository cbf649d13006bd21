"""Paper-style training with binarization in the loop (no Qt; callable from CLI, GUI, scripts).

``train(model, bundle, config)`` trains whatever mode map the model's wrapped layers hold:

* forward in each layer's mode (float, BWN ``alpha * sign(W)``, XNOR), backward through the
  straight-through estimator of the layer wrappers; the optimizer updates the *real-valued*
  weights (paper section 3.1, Algorithm 1);
* Adam with a cosine learning-rate schedule (per step, from ``lr`` down to ``lr * final_lr``);
* light augmentation: a random shift of up to ``shift_px`` pixels, a rotation of up to
  ``rotate_deg`` degrees and a scale of ``1 +- scale`` per image (one affine warp, border
  pixels repeated), seeded;
* seeds: ``torch.manual_seed(seed)`` before the run; shuffling and augmentation use their own
  generators seeded from ``seed``;
* which epoch's weights are kept (``keep``), and which split says how good they are, follow
  one rule: the split that reports an accuracy never chose anything. ``keep=last`` trains on
  the training split for a number of epochs fixed in advance and reports on ``val``;
  ``keep=best`` carves a stratified selection split (``select_fraction``) out of the training
  split, keeps the epoch that scores best there and reports the kept weights on ``val``;
  ``train_on_all`` fits train + val with ``keep=last`` and reports nothing (the figure of such a
  final fit comes from an earlier run of the same recipe on the held-out split);
* the kept weights are at ``checkpoint`` on disk (written atomically after each kept epoch);
* ``should_cancel()`` is polled every batch; a cancelled run still leaves a valid checkpoint
  (the kept epoch so far, or the current weights if no epoch finished) and restores the kept
  weights into the model;
* runs on CUDA when present (``device``), else CPU;
* ``world``: one rank of a run on several processes (``xnorlab.train.distributed``): the same
  global batches, augmentation, loss and BatchNorm statistics as one process with the same
  ``batch_size`` and ``seed``, up to float summation order; rank 0 alone monitors, reports
  progress, writes the checkpoint and keeps the chosen epoch, the other ranks only train, and a
  cancel on any rank stops every rank after the same batch.

Fine-tuning ("binarize then recover"): load a float model, ``binarize_model(model, "paper")``,
then ``train`` it with a smaller ``lr``.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from xnorlab._version import __version__
from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import CancelFn, ProgressFn
from xnorlab.data.bundle import DatasetBundle
from xnorlab.data.datasets import subset
from xnorlab.data.sampling import dataset_labels, stratified_indices
from xnorlab.measure.evaluate import evaluate, make_loader, pick_device
from xnorlab.measure.intervals import Accuracy
from xnorlab.models.checkpoint import layer_settings, save_checkpoint
from xnorlab.train.distributed import (
    SINGLE,
    BatchPart,
    World,
    all_sum,
    batch_part,
    check_batch,
    data_parallel,
    global_batch_norm,
    rank_loader,
)


class KeepEpoch(str, Enum):
    """Which epoch's weights a run keeps."""

    LAST = "last"  # the epoch count is fixed in advance; nothing is selected
    BEST = "best"  # the best epoch on a selection split carved out of the training data

    def __str__(self) -> str:
        return str(self.value)


@dataclass
class TrainConfig:
    """Hyper-parameters of one run (all stored in the checkpoint card as the recipe).

    The defaults are the demo recipe (``scripts/train_demo.py``), so ``xnorlab train`` without
    options reproduces the shipped checkpoints.
    """

    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    final_lr: float = 0.0  # fraction of lr reached at the end of the cosine schedule
    weight_decay: float = 0.0
    seed: int = 0
    shift_px: float = 2.0
    rotate_deg: float = 10.0
    scale: float = 0.1
    label_smoothing: float = 0.0
    keep: KeepEpoch = KeepEpoch.LAST
    select_fraction: float = 0.1  # share of the training split that selects (keep=best)
    train_on_all: bool = False  # fit train + val (keep=last, nothing left to report on)
    device: str | None = None
    max_train_items: int | None = None  # use a seeded subset (quick runs, tests)

    def validate(self) -> None:
        """Raise ``XnorlabError`` on values that cannot train."""
        self.keep = KeepEpoch(self.keep)
        if self.epochs < 1 or self.batch_size < 1:
            raise XnorlabError("epochs and batch size must be at least 1")
        if self.keep is KeepEpoch.BEST and not 0 < self.select_fraction < 1:
            raise XnorlabError("the selection split must be a fraction in (0, 1)")
        if self.train_on_all and self.keep is KeepEpoch.BEST:
            raise XnorlabError("training on all data leaves no split to select on: keep last")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise XnorlabError(f"learning rate must be a positive number, got {self.lr}")
        if self.shift_px < 0 or self.rotate_deg < 0 or not 0 <= self.scale < 1:
            raise XnorlabError("augmentation amounts must be >= 0 (scale < 1)")


@dataclass
class EpochMetrics:
    """One epoch: training loss/accuracy (augmented data) and validation loss/accuracy."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float


@dataclass
class TrainResult:
    """What a run produced; the model holds the kept weights when it returns.

    ``val`` is the kept weights' accuracy on the split that chose nothing (None when the run
    trained on all data); ``monitor_acc`` is the kept epoch's score on the split watched each
    epoch (the selection split for keep=best, optimistic there).
    """

    history: list[EpochMetrics] = field(default_factory=list)
    kept_epoch: int = 0
    monitor_acc: float = 0.0
    val: Accuracy | None = None
    seconds: float = 0.0  # wall clock
    cpu_seconds: float = 0.0  # CPU time of this process (all threads), less load-sensitive
    cancelled: bool = False
    checkpoint: Path | None = None
    card: dict[str, Any] = field(default_factory=dict)
    processes: int = 1  # ranks that trained together


def augment_batch(
    images: Tensor, config: TrainConfig, generator: torch.Generator, part: BatchPart | None = None
) -> Tensor:
    """Random shift (+-``shift_px``), rotation (+-``rotate_deg``) and scale per image.

    One affine warp per image with ``grid_sample`` (bilinear, border pixels repeated, so the
    background stays background after normalization). With ``part``, ``images`` are rows
    ``[part.start, part.stop)`` of a global batch of ``part.count``: the draws are made for the
    whole global batch, so every rank moves its images as one process would.
    """
    if config.shift_px == 0 and config.rotate_deg == 0 and config.scale == 0:
        return images
    n, _, h, w = images.shape
    count, rows = (n, slice(0, n)) if part is None else (part.count, slice(part.start, part.stop))

    def uniform(bound: float) -> Tensor:
        return ((torch.rand(count, generator=generator) * 2 - 1) * bound)[rows]

    angle = uniform(math.radians(config.rotate_deg))
    zoom = 1.0 + uniform(config.scale)
    shift_x, shift_y = uniform(config.shift_px) * 2 / w, uniform(config.shift_px) * 2 / h
    if n == 0:  # an empty slice of a short last batch: drawn, nothing to move
        return images
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1
    ).to(images.dtype)
    grid = F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _versions() -> dict[str, str]:
    return {"xnorlab_version": __version__, "torch_version": str(torch.__version__)}


def build_card(
    config: TrainConfig, result: TrainResult, bundle: DatasetBundle, modes: dict[str, str]
) -> dict[str, Any]:
    """The JSON card stored with a checkpoint: recipe, seed, epochs, how the kept epoch was
    chosen, the accuracy with its sample size and interval, time, versions."""
    history = result.history
    val = result.val
    return {
        "recipe": {**asdict(config), "keep": str(config.keep)},
        "seed": config.seed,
        "epochs": len(history),
        "data": bundle.name,
        "data_description": bundle.description,
        "train_items": _train_items(bundle, config),
        "kept": _kept_text(config),
        "kept_epoch": result.kept_epoch,
        "monitor_accuracy": _finite_or_none(result.monitor_acc),
        "val_accuracy": None if val is None else val.value,
        "val_items": None if val is None else val.n,
        "val_interval95": None if val is None else list(val.interval),
        "training_seconds": round(result.seconds, 1),
        "cpu_seconds": round(result.cpu_seconds, 1),
        "cancelled": result.cancelled,
        "processes": result.processes,
        "modes": modes,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "history": [{k: _finite_or_none(v) for k, v in asdict(m).items()} for m in history],
        **_versions(),
    }


def _finite_or_none(value: Any) -> Any:
    """Cards are strict JSON: a score that does not exist (no split to watch) is null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _train_items(bundle: DatasetBundle, config: TrainConfig) -> int:
    total = len(bundle.train) + (len(bundle.val) if config.train_on_all else 0)  # type: ignore[arg-type]
    if config.keep is KeepEpoch.BEST:
        total -= round(config.select_fraction * len(bundle.train))  # type: ignore[arg-type]
    return total if config.max_train_items is None else min(total, config.max_train_items)


def _kept_text(config: TrainConfig) -> str:
    if config.keep is KeepEpoch.BEST:
        share = f"{config.select_fraction:.0%}"
        return f"best epoch on a stratified {share} of the training split (val chose nothing)"
    if config.train_on_all:
        return f"last epoch of {config.epochs}, fixed in advance; trained on train + val"
    return f"last epoch of {config.epochs}, fixed in advance (val chose nothing)"


@dataclass
class _Splits:
    """Which items train, which select the kept epoch (keep=best), which report."""

    train: Dataset[Any]
    select: Dataset[Any] | None
    report: Dataset[Any] | None

    @property
    def monitor(self) -> Dataset[Any] | None:
        """The split scored after each epoch: the selection split when there is one."""
        return self.select if self.select is not None else self.report


def _splits(bundle: DatasetBundle, config: TrainConfig) -> _Splits:
    if config.train_on_all:
        return _Splits(bundle.split("all"), None, None)
    if config.keep is KeepEpoch.LAST:
        return _Splits(bundle.train, None, bundle.val)
    labels = dataset_labels(bundle.train)
    count = round(config.select_fraction * len(labels))
    chosen = stratified_indices(labels, count, config.seed)
    rest = sorted(set(range(len(labels))) - set(chosen.tolist()))
    return _Splits(Subset(bundle.train, rest), Subset(bundle.train, chosen.tolist()), bundle.val)


class _Run:
    """State of one training run (split out so each step stays a small function)."""

    def __init__(
        self,
        model: nn.Module,
        bundle: DatasetBundle,
        config: TrainConfig,
        progress: ProgressFn | None,
        should_cancel: CancelFn | None,
        world: World,
    ) -> None:
        self.model, self.bundle, self.config = model, bundle, config
        self.progress, self.should_cancel = progress, should_cancel
        self.world = world
        self.device = pick_device(config.device)
        self.shuffle_gen = torch.Generator().manual_seed(config.seed)
        self.augment_gen = torch.Generator().manual_seed(config.seed + 1)
        self.splits = _splits(bundle, config)
        self.train_set = self.splits.train
        if config.max_train_items is not None:
            self.train_set = subset(self.train_set, config.max_train_items, config.seed)
        self.steps_per_epoch = max(1, math.ceil(len(self.train_set) / config.batch_size))  # type: ignore[arg-type]
        self.total_steps = self.steps_per_epoch * config.epochs
        decay = config.weight_decay
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=decay)
        eta_min = config.lr * config.final_lr
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=self.total_steps, eta_min=eta_min
        )
        self.step = 0
        self.cpu_start = time.process_time()
        self.cancelled = False
        self.kept_state: dict[str, Tensor] | None = None
        self.result = TrainResult(processes=world.size)
        self.parallel: nn.Module | None = None  # the model in DDP, made at the first step

    def _cancel_requested(self) -> bool:
        if self.should_cancel is not None and self.should_cancel():
            self.cancelled = True
        return self.cancelled

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """One pass over the training set; returns (mean loss, accuracy)."""
        self.model.train()
        if self.world.spread:
            return self._train_epoch_spread(epoch)
        loss_sum, hits, seen = 0.0, 0, 0
        loader = make_loader(self.train_set, self.config.batch_size, True, self.shuffle_gen)
        for images, labels in loader:
            if self._cancel_requested():
                break
            if len(labels) < 2:  # BatchNorm cannot normalise a batch of one in train mode
                continue
            inputs = augment_batch(images, self.config, self.augment_gen).to(self.device)
            targets = labels.long().to(self.device)
            logits = self.model(inputs)
            loss = F.cross_entropy(logits, targets, label_smoothing=self.config.label_smoothing)
            if not torch.isfinite(loss):
                raise XnorlabError(f"training diverged (loss {loss.item()}) at epoch {epoch}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            loss_sum += float(loss.detach()) * len(labels)
            hits += int((logits.argmax(1) == targets).sum())
            seen += len(labels)
            self._report_step(epoch, loss_sum / seen, hits / seen)
        return loss_sum / max(seen, 1), hits / max(seen, 1)

    def _train_epoch_spread(self, epoch: int) -> tuple[float, float]:
        """One pass in which this rank trains on its slice of every global batch; returns the
        global batches' (mean loss, accuracy)."""
        batch_size, items = self.config.batch_size, len(self.train_set)  # type: ignore[arg-type]
        totals = torch.zeros(3, dtype=torch.float64)  # loss sum, hits, items: all ranks
        loader = rank_loader(self.train_set, batch_size, self.shuffle_gen, self.world)
        with global_batch_norm(self.model):
            for step, batch in enumerate(loader):
                if self._cancel_agreed():
                    break
                part = batch_part(step, items, batch_size, self.world)
                if part.count < 2:  # as in one process: BatchNorm needs two items
                    continue
                images, labels = self._empty_slice() if batch is None else batch
                totals += self._spread_step(epoch, images, labels, part)
                seen = float(totals[2])
                self._report_step(epoch, float(totals[0]) / seen, float(totals[1]) / seen)
        seen = max(float(totals[2]), 1.0)
        return float(totals[0]) / seen, float(totals[1]) / seen

    def _spread_step(self, epoch: int, images: Tensor, labels: Tensor, part: BatchPart) -> Tensor:
        """Forward this rank's slice, agree on the global loss, step; returns the global
        (loss sum, hits, items) of the batch.

        The rank's loss is ``sum of its items' losses * ranks / global count``: DDP averages
        the gradients over the ranks, so the step follows the global batch's mean loss.
        """
        inputs = augment_batch(images, self.config, self.augment_gen, part).to(self.device)
        targets = labels.long().to(self.device)
        if self.parallel is None:
            self.parallel = data_parallel(self.model, self.device)
        logits = self.parallel(inputs)
        smoothing = self.config.label_smoothing
        losses = F.cross_entropy(logits, targets, label_smoothing=smoothing, reduction="sum")
        hits = (logits.argmax(1) == targets).sum()
        local = torch.stack([losses.detach().double(), hits.double()])
        count = torch.tensor([float(len(targets))], dtype=torch.float64, device=self.device)
        totals = all_sum(torch.cat([local, count])).cpu()
        if not math.isfinite(float(totals[0])):
            mean = float(totals[0]) / part.count
            raise XnorlabError(f"training diverged (loss {mean}) at epoch {epoch}")
        self.optimizer.zero_grad(set_to_none=True)
        (losses * (self.world.size / part.count)).backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return totals

    def _cancel_agreed(self) -> bool:
        """Whether any rank was asked to cancel: all ranks stop before the same batch."""
        flag = torch.tensor([float(self._cancel_requested())], device=self.device)
        self.cancelled = bool(all_sum(flag).item() > 0)
        return self.cancelled

    def _empty_slice(self) -> tuple[Tensor, Tensor]:
        """No rows of a global batch shorter than the number of ranks: an empty batch that
        still takes part in the collectives of the step."""
        image, _ = self.train_set[0]
        return torch.as_tensor(image).unsqueeze(0)[:0], torch.zeros(0, dtype=torch.long)

    def _report_step(self, epoch: int, loss: float, acc: float) -> None:
        if self.progress is None:
            return
        metrics = {"epoch": epoch, "train_loss": loss, "train_acc": acc}
        message = f"epoch {epoch}/{self.config.epochs} loss {loss:.3f} acc {acc:.3f}"
        self.progress(self.step / self.total_steps, message, metrics)

    def monitor(self) -> tuple[float, float]:
        """(loss, top-1) on the split watched after each epoch; NaN when there is none (and
        on every rank but rank 0, which alone evaluates)."""
        split = self.splits.monitor
        if split is None or not self.world.is_main:
            return math.nan, math.nan
        check = evaluate(self.model, split, self.bundle.class_names, device=self.device)
        return check.loss, check.top1


def train(
    model: nn.Module,
    bundle: DatasetBundle,
    config: TrainConfig | None = None,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    checkpoint: str | Path | None = None,
    meta: dict[str, Any] | None = None,
    world: World = SINGLE,
) -> TrainResult:
    """Train ``model`` on ``bundle`` in its current mode map (see the module docstring).

    ``checkpoint``: where the kept weights are saved (with ``meta``: ``arch``,
    ``class_names``, ``preprocessing``, ... plus the mode map, layer settings and card; a
    ``card`` dict in ``meta`` is merged into the card). ``world``: this process's rank in a
    run on several processes, inside its process group (``distributed.process_group``); only
    rank 0 uses ``progress`` and ``checkpoint``, and only its model ends with the kept weights.
    """
    cfg = config or TrainConfig()
    cfg.validate()
    if len(bundle.train) == 0 or (len(bundle.val) == 0 and not cfg.train_on_all):  # type: ignore[arg-type]
        raise XnorlabError("training needs a non-empty train and val split")
    check_batch(cfg.batch_size, world.size)
    if not world.is_main:
        progress, checkpoint = None, None
    torch.manual_seed(cfg.seed)
    run = _Run(model, bundle, cfg, progress, should_cancel, world)
    model.to(run.device)
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        train_loss, train_acc = run.train_epoch(epoch)
        if run.cancelled and run.result.history:
            break
        loss, top1 = run.monitor()
        lr_now = float(run.optimizer.param_groups[0]["lr"])
        metrics = EpochMetrics(
            epoch, train_loss, train_acc, loss, top1, lr_now, time.perf_counter() - t0
        )
        _record_epoch(run, metrics, start, checkpoint, meta)
        if run.cancelled:
            break
    return _finish(run, start, checkpoint, meta)


def _keeps(run: _Run, metrics: EpochMetrics) -> bool:
    """Whether this epoch's weights replace the kept ones."""
    if run.kept_state is None or run.config.keep is KeepEpoch.LAST:
        return True
    return metrics.val_acc > run.result.monitor_acc


def _record_epoch(
    run: _Run,
    metrics: EpochMetrics,
    start: float,
    checkpoint: str | Path | None,
    meta: dict[str, Any] | None,
) -> None:
    result = run.result
    result.history.append(metrics)
    if not run.world.is_main:
        return
    if _keeps(run, metrics):
        result.monitor_acc, result.kept_epoch = metrics.val_acc, metrics.epoch
        run.kept_state = copy.deepcopy(run.model.state_dict())
        result.seconds = time.perf_counter() - start
        result.cpu_seconds = time.process_time() - run.cpu_start
        if checkpoint is not None:
            _save(run, checkpoint, meta)
    if run.progress is not None:
        watched = "select" if run.splits.select is not None else "val"
        message = (
            f"epoch {metrics.epoch}/{run.config.epochs}: {watched} acc {metrics.val_acc:.4f}"
            f" (kept epoch {result.kept_epoch})"
        )
        run.progress(run.step / run.total_steps, message, asdict(metrics))


def _save(run: _Run, checkpoint: str | Path, meta: dict[str, Any] | None) -> None:
    modes, configs = layer_settings(run.model)
    extra = (meta or {}).get("card", {})
    card = {
        **(extra if isinstance(extra, dict) else {}),
        **build_card(run.config, run.result, run.bundle, modes),
    }
    record = {**(meta or {}), "modes": modes, "layer_config": configs, "card": card}
    record.setdefault("class_names", run.bundle.class_names)
    record.setdefault("preprocessing", run.bundle.preprocessing.to_json())
    run.result.checkpoint = save_checkpoint(checkpoint, run.model, record)
    run.result.card = card


def _report_accuracy(run: _Run) -> Accuracy | None:
    """The kept weights on the split that chose nothing (rank 0 alone evaluates)."""
    split = run.splits.report
    if split is None or not run.world.is_main:
        return None
    check = evaluate(run.model, split, run.bundle.class_names, device=run.device)
    n = len(split)  # type: ignore[arg-type]
    return Accuracy(hits=round(check.top1 * n), n=n)


def _finish(
    run: _Run, start: float, checkpoint: str | Path | None, meta: dict[str, Any] | None
) -> TrainResult:
    result = run.result
    result.cancelled = run.cancelled
    if run.kept_state is not None:
        run.model.load_state_dict(run.kept_state)
    result.val = _report_accuracy(run)
    result.seconds = time.perf_counter() - start
    result.cpu_seconds = time.process_time() - run.cpu_start
    if checkpoint is not None:
        _save(run, checkpoint, meta)  # final card: full history, report figure, cancelled flag
    run.model.eval()
    return result
