"""An ensemble of networks as one model: ``BinaryEnsemble``.

The members sit in an ``nn.ModuleList`` named ``members``, so their layers are named
``members.0.conv1``, ``members.1.fc3``, ... and are listed, toggled, saved and exported like any
model's. The forward returns the log of the members' mean softmax,

    ``out = log((1/K) * sum_k softmax(f_k(x)))``  (computed as ``logsumexp_k log_softmax - log K``),

so ``argmax(out)`` is the mean-softmax vote and ``softmax(out)`` the mean probabilities: every
top-1 and prediction path of the lab works on an ensemble unchanged.

A saved ensemble names its architecture ``ensemble-ARCH-K`` (``ensemble_arch``), which
``models.zoo.build_arch`` rebuilds (K members of ARCH, random init) before the weights are
loaded; how it was trained (member seeds, modes, bagging, each member's card) is in the card's
``ensemble`` entry (``ensemble_card``), read back for display by ``ensemble_info``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xnorlab.common.errors import XnorlabError, quoted

MAX_MEMBERS = 64  # members of one ensemble: bounds what a file's architecture name can build
ARCH_PREFIX = "ensemble-"
CARD_KEY = "ensemble"  # the card entry describing how the members were made


class BinaryEnsemble(nn.Module):
    """K networks voting by their mean softmax (module docstring)."""

    # binary.surgery: each member has its own first and last layer (presets keep them float)
    independent_members = True

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not 1 <= len(members) <= MAX_MEMBERS:
            raise XnorlabError(f"an ensemble has 1..{MAX_MEMBERS} members, got {len(members)}")
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor) -> Tensor:
        logs = torch.stack([F.log_softmax(member(x), dim=1) for member in self.members])
        return torch.logsumexp(logs, dim=0) - math.log(len(self.members))

    def first(self, count: int) -> BinaryEnsemble:
        """An ensemble of the first ``count`` members (the same modules, not copies)."""
        if not 1 <= count <= len(self.members):
            raise XnorlabError(f"choose 1..{len(self.members)} members, got {count}")
        return BinaryEnsemble(list(self.members)[:count])


def ensemble_arch(member_arch: str, count: int) -> str:
    """The architecture name of ``count`` members of ``member_arch``: ``ensemble-lenet-4``."""
    return f"{ARCH_PREFIX}{member_arch}-{count}"


def parse_ensemble_arch(arch: str) -> tuple[str, int] | None:
    """``(member_arch, count)`` of an ``ensemble-ARCH-K`` name, None for any other name; an
    ensemble name with a count outside ``1..MAX_MEMBERS`` or an ensemble as member is refused
    (a file's word never builds more than ``MAX_MEMBERS`` members)."""
    if not arch.startswith(ARCH_PREFIX):
        return None
    member, _, count_text = arch[len(ARCH_PREFIX) :].rpartition("-")
    if not member or not count_text.isdigit() or len(count_text) > 3:
        raise XnorlabError(f"{quoted(arch)} is not an ensemble name ({ARCH_PREFIX}ARCH-COUNT)")
    count = int(count_text)
    if not 1 <= count <= MAX_MEMBERS:
        raise XnorlabError(f"{quoted(arch)}: an ensemble has 1..{MAX_MEMBERS} members")
    if member.startswith(ARCH_PREFIX):
        raise XnorlabError(f"{quoted(arch)}: an ensemble's members cannot be ensembles")
    return member, count


def member_arch_of(arch: str) -> str:
    """The members' architecture of an ensemble name, else ``arch`` itself: what the defaults
    that follow an architecture (input, class names, data) follow."""
    try:
        members = parse_ensemble_arch(arch)
    except XnorlabError:
        return arch
    return arch if members is None else members[0]


def is_ensemble(model: nn.Module) -> bool:
    return isinstance(model, BinaryEnsemble)


# ------------------------------------------------------------------------------- card


CARD_DROPPED = ("history",)  # per-epoch curves of each member: not needed to describe it


def ensemble_card(
    member_arch: str,
    seeds: Sequence[int],
    modes: str,
    bagging: bool,
    member_cards: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """The card's ``ensemble`` entry: member architecture and count, seeds, modes, bagging and
    each member's training card (without its per-epoch history)."""
    return {
        "arch": member_arch,
        "members": len(seeds),
        "seeds": [int(seed) for seed in seeds],
        "modes": modes,
        "bagging": bool(bagging),
        "vote": "mean of the members' softmax",
        "member_cards": [
            {k: v for k, v in card.items() if k not in CARD_DROPPED} for card in member_cards
        ],
    }


@dataclass(frozen=True)
class EnsembleInfo:
    """What a model card says about an ensemble (for display; the model is the truth)."""

    member_arch: str
    members: int
    seeds: tuple[int, ...]
    modes: str
    bagging: bool
    member_accuracies: tuple[float | None, ...]  # each member's held-out top-1, if recorded

    def text(self) -> str:
        """``4 x lenet (paper), seeds 0-3, bagging``: one line for the model's description."""
        seeds = ", ".join(str(s) for s in self.seeds[:8]) + (", ..." if len(self.seeds) > 8 else "")
        bag = ", bagging" if self.bagging else ""
        return f"{self.members} x {self.member_arch} ({self.modes}), seeds {seeds}{bag}"


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def ensemble_info(card: Any) -> EnsembleInfo | None:
    """The card's ``ensemble`` entry read leniently (a card is free text a file carries: any
    malformed entry gives None, never an error)."""
    entry = card.get(CARD_KEY) if isinstance(card, dict) else None
    if not isinstance(entry, dict):
        return None
    count, seeds = _whole(entry.get("members")), entry.get("seeds")
    if count is None or not 1 <= count <= MAX_MEMBERS or not isinstance(seeds, list):
        return None
    cards = entry.get("member_cards")
    accuracies = tuple(
        float(c["val_accuracy"])
        if isinstance(c, dict) and isinstance(c.get("val_accuracy"), (int, float))
        else None
        for c in (cards if isinstance(cards, list) else [])[:MAX_MEMBERS]
    )
    return EnsembleInfo(
        member_arch=str(entry.get("arch", "?"))[:200],
        members=count,
        seeds=tuple(s for s in (_whole(v) for v in seeds[:MAX_MEMBERS]) if s is not None),
        modes=str(entry.get("modes", "?"))[:200],
        bagging=entry.get("bagging") is True,
        member_accuracies=accuracies,
    )


def members_line(model: nn.Module, card: Any, short: bool = False) -> str | None:
    """``ensemble of 8 members`` (``short``) or that plus how they were made and each one's
    held-out top-1 from the card (the model info of the app); None for any other model."""
    if not isinstance(model, BinaryEnsemble):
        return None
    head = f"ensemble of {len(model.members)} members"
    info = ensemble_info(card)
    if short or info is None:
        return head
    scores = [f"{100 * a:.2f} %" for a in info.member_accuracies if a is not None]
    alone = f"; held-out top-1 of each: {', '.join(scores)}" if scores else ""
    return f"{head}: {info.text()}{alone}"
