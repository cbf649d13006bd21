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
* per-epoch train loss/accuracy and validation loss/accuracy; the best validation accuracy's
  weights are kept (in memory, and at ``checkpoint`` on disk, written atomically);
* ``should_cancel()`` is polled every batch; a cancelled run still leaves a valid checkpoint
  (the best epoch so far, or the current weights if no epoch finished) and restores the best
  weights into the model;
* runs on CUDA when present (``device``), else CPU.

Fine-tuning ("binarize then recover"): load a float model, ``binarize_model(model, "paper")``,
then ``train`` it with a smaller ``lr``.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xnorlab._version import __version__
from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import CancelFn, ProgressFn
from xnorlab.data.bundle import DatasetBundle
from xnorlab.data.datasets import subset
from xnorlab.measure.evaluate import evaluate, make_loader, pick_device
from xnorlab.models.checkpoint import layer_settings, save_checkpoint


@dataclass
class TrainConfig:
    """Hyper-parameters of one run (all stored in the checkpoint card as the recipe)."""

    epochs: int = 15
    batch_size: int = 64
    lr: float = 2e-3
    final_lr: float = 0.0  # fraction of lr reached at the end of the cosine schedule
    weight_decay: float = 0.0
    seed: int = 0
    shift_px: float = 2.0
    rotate_deg: float = 0.0
    scale: float = 0.0
    label_smoothing: float = 0.0
    device: str | None = None
    max_train_items: int | None = None  # use a seeded subset (quick runs, tests)

    def validate(self) -> None:
        """Raise ``XnorlabError`` on values that cannot train."""
        if self.epochs < 1 or self.batch_size < 1:
            raise XnorlabError("epochs and batch size must be at least 1")
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
    """What a run produced; ``model`` holds the best weights when it returns."""

    history: list[EpochMetrics] = field(default_factory=list)
    best_epoch: int = 0
    best_val_acc: float = 0.0
    seconds: float = 0.0  # wall clock
    cpu_seconds: float = 0.0  # CPU time of this process (all threads), less load-sensitive
    cancelled: bool = False
    checkpoint: Path | None = None
    card: dict[str, Any] = field(default_factory=dict)


def augment_batch(images: Tensor, config: TrainConfig, generator: torch.Generator) -> Tensor:
    """Random shift (+-``shift_px``), rotation (+-``rotate_deg``) and scale per image.

    One affine warp per image with ``grid_sample`` (bilinear, border pixels repeated, so the
    background stays background after normalization).
    """
    if config.shift_px == 0 and config.rotate_deg == 0 and config.scale == 0:
        return images
    n, _, h, w = images.shape

    def uniform(bound: float) -> Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * bound

    angle = uniform(math.radians(config.rotate_deg))
    zoom = 1.0 + uniform(config.scale)
    shift_x, shift_y = uniform(config.shift_px) * 2 / w, uniform(config.shift_px) * 2 / h
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
    """The JSON card stored with a checkpoint: recipe, seed, epochs, accuracy, time, versions."""
    history = result.history
    return {
        "recipe": asdict(config),
        "seed": config.seed,
        "epochs": len(history),
        "data": bundle.name,
        "data_description": bundle.description,
        "train_items": len(bundle.train),  # type: ignore[arg-type]
        "val_items": len(bundle.val),  # type: ignore[arg-type]
        "val_accuracy": result.best_val_acc,
        "best_epoch": result.best_epoch,
        "training_seconds": round(result.seconds, 1),
        "cpu_seconds": round(result.cpu_seconds, 1),
        "cancelled": result.cancelled,
        "modes": modes,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "history": [asdict(m) for m in history],
        **_versions(),
    }


class _Run:
    """State of one training run (split out so each step stays a small function)."""

    def __init__(
        self,
        model: nn.Module,
        bundle: DatasetBundle,
        config: TrainConfig,
        progress: ProgressFn | None,
        should_cancel: CancelFn | None,
    ) -> None:
        self.model, self.bundle, self.config = model, bundle, config
        self.progress, self.should_cancel = progress, should_cancel
        self.device = pick_device(config.device)
        self.shuffle_gen = torch.Generator().manual_seed(config.seed)
        self.augment_gen = torch.Generator().manual_seed(config.seed + 1)
        self.train_set = bundle.train
        if config.max_train_items is not None:
            self.train_set = subset(bundle.train, config.max_train_items, config.seed)
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
        self.best_state: dict[str, Tensor] | None = None
        self.result = TrainResult()

    def _cancel_requested(self) -> bool:
        if self.should_cancel is not None and self.should_cancel():
            self.cancelled = True
        return self.cancelled

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """One pass over the training set; returns (mean loss, accuracy)."""
        self.model.train()
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

    def _report_step(self, epoch: int, loss: float, acc: float) -> None:
        if self.progress is None:
            return
        metrics = {"epoch": epoch, "train_loss": loss, "train_acc": acc}
        message = f"epoch {epoch}/{self.config.epochs} loss {loss:.3f} acc {acc:.3f}"
        self.progress(self.step / self.total_steps, message, metrics)


def train(
    model: nn.Module,
    bundle: DatasetBundle,
    config: TrainConfig | None = None,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    checkpoint: str | Path | None = None,
    meta: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` on ``bundle`` in its current mode map (see the module docstring).

    ``checkpoint``: where the best weights are saved (with ``meta``: ``arch``,
    ``class_names``, ``preprocessing``, ... plus the mode map, layer settings and card; a
    ``card`` dict in ``meta`` is merged into the card).
    """
    cfg = config or TrainConfig()
    cfg.validate()
    if len(bundle.train) == 0 or len(bundle.val) == 0:  # type: ignore[arg-type]
        raise XnorlabError("training needs a non-empty train and val split")
    torch.manual_seed(cfg.seed)
    run = _Run(model, bundle, cfg, progress, should_cancel)
    model.to(run.device)
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        train_loss, train_acc = run.train_epoch(epoch)
        if run.cancelled and run.result.history:
            break
        check = evaluate(model, bundle.val, bundle.class_names, device=run.device)
        lr_now = float(run.optimizer.param_groups[0]["lr"])
        metrics = EpochMetrics(
            epoch, train_loss, train_acc, check.loss, check.top1, lr_now, time.perf_counter() - t0
        )
        _record_epoch(run, metrics, start, checkpoint, meta)
        if run.cancelled:
            break
    return _finish(run, start, checkpoint, meta)


def _record_epoch(
    run: _Run,
    metrics: EpochMetrics,
    start: float,
    checkpoint: str | Path | None,
    meta: dict[str, Any] | None,
) -> None:
    result = run.result
    result.history.append(metrics)
    if run.best_state is None or metrics.val_acc > result.best_val_acc:
        result.best_val_acc, result.best_epoch = metrics.val_acc, metrics.epoch
        run.best_state = copy.deepcopy(run.model.state_dict())
        result.seconds = time.perf_counter() - start
        result.cpu_seconds = time.process_time() - run.cpu_start
        if checkpoint is not None:
            _save(run, checkpoint, meta)
    if run.progress is not None:
        message = (
            f"epoch {metrics.epoch}/{run.config.epochs}: val acc {metrics.val_acc:.4f} "
            f"(best {result.best_val_acc:.4f})"
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


def _finish(
    run: _Run, start: float, checkpoint: str | Path | None, meta: dict[str, Any] | None
) -> TrainResult:
    result = run.result
    result.cancelled = run.cancelled
    if run.best_state is not None:
        run.model.load_state_dict(run.best_state)
    result.seconds = time.perf_counter() - start
    result.cpu_seconds = time.process_time() - run.cpu_start
    if checkpoint is not None:
        _save(run, checkpoint, meta)  # final card: full history, cancelled flag
    run.model.eval()
    return result
