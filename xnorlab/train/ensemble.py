"""Train K members of one architecture into one ensemble (``models.ensemble.BinaryEnsemble``).

Member ``i`` is a new ``ARCH`` whose initial weights, shuffling and augmentation follow seed
``seed + i``, put in the mode map ``modes`` and trained with the recipe (``TrainConfig``; its
defaults are the demo recipe) on the training split only: with ``keep=last`` nothing is chosen
on any split, and ``val`` stays held out for the ensemble's evaluation
(``measure.ensemble``). With ``bagging`` each member trains on a bootstrap resample of the
training split (``N`` draws with replacement, seeded by the member's seed).

After each member the ensemble of the members finished so far is written to ``out``
(atomically), so a cancelled run (Ctrl-C: after the current batch) leaves a valid ensemble of
its finished members; a member cancelled half-way is kept only when no member finished (its
card says ``cancelled``). On several processes (``nproc``) the members are spread over the
ranks (member ``i`` on rank ``i mod nproc``); each rank trains its own members in one process
of its own (no gradients are exchanged: ``train.launch`` only runs and supervises them), writes
each as a part, and the calling process joins the parts in member order.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

from xnorlab.binary.surgery import binarize_model
from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import CancelFn, ProgressFn, SigintCancel, no_progress
from xnorlab.data.bundle import DatasetBundle
from xnorlab.data.datasets import load_dataset
from xnorlab.data.images import Preprocessing
from xnorlab.models.checkpoint import layer_settings, save_checkpoint
from xnorlab.models.ensemble import (
    CARD_KEY,
    MAX_MEMBERS,
    BinaryEnsemble,
    ensemble_arch,
    ensemble_card,
)
from xnorlab.models.spec import load_model_spec
from xnorlab.models.zoo import build_arch
from xnorlab.train.launch import EXIT_INTERRUPTED, launch, report_failure
from xnorlab.train.training import KeepEpoch, TrainConfig, build_card, train

PART_NAME = "member-{index}.pt"
LABEL = "xnorlab ensemble"


@dataclass(frozen=True)
class EnsemblePlan:
    """What to train: ``members`` nets of ``arch`` in ``modes`` (a preset or a mode file),
    member ``i`` with seed ``recipe.seed + i``, on bootstrap resamples when ``bagging``."""

    arch: str
    members: int
    modes: str = "paper"
    bagging: bool = False
    recipe: TrainConfig = field(default_factory=TrainConfig)
    data: str = "mnist5k"  # the data spec (ranks of a spread run load it themselves)

    def validate(self) -> None:
        """Raise ``XnorlabError`` for a plan that cannot train (before any work)."""
        if not 1 <= self.members <= MAX_MEMBERS:
            raise XnorlabError(f"an ensemble has 1..{MAX_MEMBERS} members, got {self.members}")
        if self.recipe.keep is not KeepEpoch.LAST or self.recipe.train_on_all:
            raise XnorlabError(
                "ensemble members keep their last epoch and train on the training split only "
                "(the held-out split is the ensemble's test)"
            )
        self.recipe.validate()

    def seed(self, index: int) -> int:
        return self.recipe.seed + index


@dataclass
class EnsembleResult:
    """What a run produced: the ensemble of the kept members (also at ``checkpoint``)."""

    model: BinaryEnsemble | None
    member_cards: list[dict[str, Any]]
    checkpoint: Path | None
    cancelled: bool
    seconds: float
    processes: int = 1


def bootstrap_indices(count: int, seed: int) -> np.ndarray:
    """``count`` indices drawn uniformly with replacement from ``0..count-1`` (seeded)."""
    return np.random.default_rng(seed).integers(0, count, size=count)


def member_bundle(bundle: DatasetBundle, plan: EnsemblePlan, index: int) -> DatasetBundle:
    """The data member ``index`` trains on: the training split, or its bootstrap resample."""
    if not plan.bagging:
        return bundle
    drawn = bootstrap_indices(len(bundle.train), plan.seed(index))  # type: ignore[arg-type]
    resample = Subset(bundle.train, drawn.tolist())
    return dataclasses.replace(bundle, train=resample)


def new_member(plan: EnsemblePlan, index: int, classes: int) -> nn.Module:
    """A freshly initialised member (seed ``plan.seed(index)``) in the plan's modes."""
    torch.manual_seed(plan.seed(index))
    model = build_arch(plan.arch, classes)
    try:
        binarize_model(model, plan.modes, warn_first_last=False)
    except ValueError as exc:
        raise XnorlabError(str(exc)) from None
    return model


@dataclass
class _Member:
    model: nn.Module
    card: dict[str, Any]
    cancelled: bool


def train_member(
    plan: EnsemblePlan,
    bundle: DatasetBundle,
    index: int,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> _Member:
    """Train member ``index`` (module docstring); its card records seed and bootstrap."""
    model = new_member(plan, index, len(bundle.class_names))
    data = member_bundle(bundle, plan, index)
    config = dataclasses.replace(plan.recipe, seed=plan.seed(index))
    result = train(model, data, config, progress, should_cancel)
    modes, _ = layer_settings(model)
    card = build_card(config, result, data, modes)
    card["member"] = index
    if plan.bagging:
        distinct = len(set(data.train.indices))  # type: ignore[attr-defined]
        card["bootstrap"] = {"draws": len(data.train), "distinct": distinct}  # type: ignore[arg-type]
    return _Member(model, card, result.cancelled)


def _meta(plan: EnsemblePlan, bundle: DatasetBundle, members: list[_Member], seconds: float,
          processes: int) -> dict[str, Any]:  # fmt: skip
    cards = [m.card for m in members]
    card = {
        "trained": True,
        "data": bundle.name,
        "data_description": bundle.description,
        "recipe": cards[0]["recipe"] if cards else {},
        "protocol": "each member trained on the training split only, last of a fixed number "
        "of epochs; the held-out split chose nothing",
        "training_seconds": round(seconds, 1),
        "processes": processes,
        "cancelled": any(m.cancelled for m in members),
        CARD_KEY: ensemble_card(
            plan.arch, [c["seed"] for c in cards], plan.modes, plan.bagging, cards
        ),
    }
    return {
        "arch": ensemble_arch(plan.arch, len(members)),
        "num_classes": len(bundle.class_names),
        "class_names": list(bundle.class_names),
        "preprocessing": bundle.preprocessing.to_json(),
        "default_data": plan.data,
        "card": card,
    }


def save_ensemble(
    path: Path, plan: EnsemblePlan, bundle: DatasetBundle, members: list[_Member],
    seconds: float, processes: int = 1,
) -> BinaryEnsemble:  # fmt: skip
    """Write the ensemble of ``members`` (in order) to ``path``; returns it."""
    model = BinaryEnsemble([m.model for m in members])
    modes, configs = layer_settings(model)
    meta = {
        **_meta(plan, bundle, members, seconds, processes),
        "modes": modes,
        "layer_config": configs,
    }
    save_checkpoint(path, model, meta)
    return model


def _member_progress(progress: ProgressFn, index: int, count: int) -> ProgressFn:
    def report(fraction: float, message: str = "", payload: Any = None, /) -> None:
        progress((index + fraction) / count, f"member {index + 1}/{count}: {message}", payload)

    return report


def _kept(members: list[_Member]) -> list[_Member]:
    """Finished members; a cancelled one only when none finished (a file must hold one)."""
    done = [m for m in members if not m.cancelled]
    return done or members[:1]


def train_ensemble(
    plan: EnsemblePlan,
    bundle: DatasetBundle,
    out: str | Path,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> EnsembleResult:
    """Train the plan's members one after the other in this process (module docstring)."""
    plan.validate()
    report = progress or no_progress
    start = time.perf_counter()
    members: list[_Member] = []
    model: BinaryEnsemble | None = None
    path = Path(out)
    for index in range(plan.members):
        member = train_member(
            plan, bundle, index, _member_progress(report, index, plan.members), should_cancel
        )
        members.append(member)
        kept = _kept(members)
        model = save_ensemble(path, plan, bundle, kept, time.perf_counter() - start)
        if member.cancelled:
            break
    kept = _kept(members)
    return EnsembleResult(model, [m.card for m in kept], path, any(m.cancelled for m in members),
                          time.perf_counter() - start)  # fmt: skip


# ------------------------------------------------------------------- several processes


@dataclass(frozen=True)
class _RankJob:
    plan: EnsemblePlan
    preprocessing: dict[str, Any] | None
    parts: str  # folder of the members' parts
    announce: bool  # print one line per finished member


def rank_members(count: int, rank: int, ranks: int) -> list[int]:
    """The members rank ``rank`` of ``ranks`` trains: ``i`` with ``i mod ranks == rank``."""
    return list(range(rank, count, ranks))


def _rank_main(job: _RankJob) -> int:
    """One rank: train its members, write each as a part (``PART_NAME``)."""
    rank, ranks = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    prep = Preprocessing.from_json(job.preprocessing) if job.preprocessing else None
    bundle = load_dataset(job.plan.data, prep)
    cancel = SigintCancel()  # the supervisor forwards the terminal's Ctrl-C
    for index in rank_members(job.plan.members, rank, ranks):
        member = train_member(job.plan, bundle, index, None, cancel)
        part = Path(job.parts) / PART_NAME.format(index=index)
        modes, configs = layer_settings(member.model)
        meta = {"arch": job.plan.arch, "num_classes": len(bundle.class_names),
                "class_names": list(bundle.class_names), "modes": modes,
                "layer_config": configs, "card": member.card,
                "preprocessing": bundle.preprocessing.to_json()}  # fmt: skip
        save_checkpoint(part, member.model, meta)
        if job.announce:
            state = "cancelled" if member.cancelled else "done"
            value = member.card.get("val_accuracy")
            figure = f"{value:.4f}" if isinstance(value, float) else "n/a"
            print(f"{LABEL}: rank {rank}: member {index + 1}/{job.plan.members} {state}, "
                  f"held-out top-1 {figure}", file=sys.stderr, flush=True)  # fmt: skip
        if member.cancelled:  # the supervisor's one line, as for a Ctrl-C of train
            return report_failure(rank, EXIT_INTERRUPTED, f"{LABEL}: interrupted")
    return 0


def _read_parts(folder: Path, count: int) -> list[_Member]:
    """The parts written, in member order, up to the first missing one."""
    members = []
    for index in range(count):
        part = folder / PART_NAME.format(index=index)
        if not part.exists():
            break
        loaded = load_model_spec(str(part))
        members.append(_Member(loaded.model, dict(loaded.card), bool(loaded.card.get("cancelled"))))
    return members


def train_ensemble_spread(
    plan: EnsemblePlan,
    bundle: DatasetBundle,
    out: str | Path,
    nproc: int,
    announce: bool = True,
) -> tuple[int, EnsembleResult]:
    """Train the plan's members on ``nproc`` local processes (module docstring); returns the
    launcher's exit status and the ensemble of the members written (in member order, up to
    the first member missing). ``announce``: each rank prints a line per finished member (stderr)."""
    plan.validate()
    new_member(plan, 0, len(bundle.class_names))  # the modes fit the arch: one line, here
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = Path(tempfile.mkdtemp(prefix=".xnorlab-ensemble-", dir=path.parent))
    start = time.perf_counter()
    try:
        job = _RankJob(plan, bundle.preprocessing.to_json(), str(parts), announce)
        code = launch(_rank_main, job, nproc, label=LABEL)
        members = _kept(_read_parts(parts, plan.members))
        seconds = time.perf_counter() - start
        model = save_ensemble(path, plan, bundle, members, seconds, nproc) if members else None
    finally:
        shutil.rmtree(parts, ignore_errors=True)
    cancelled = code != 0 or len(members) < plan.members
    result = EnsembleResult(model, [m.card for m in members], path if model else None,
                            cancelled, seconds, nproc)  # fmt: skip
    return code, result
