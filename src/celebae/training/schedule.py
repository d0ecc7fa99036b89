"""The learning rate over a run, from ``torch.optim.lr_scheduler``; stepped after every optimiser step
(``plateau`` after every epoch, on the validation loss).

    constant   the report's: lr throughout (no scheduler at all)
    cosine     CosineAnnealingLR from lr to lr_min over schedule_epochs (then lr_min: ConstantLR)
    step       StepLR: ×lr_gamma every lr_step_epochs epochs
    plateau    ReduceLROnPlateau: ×lr_gamma after lr_patience epochs without a lower validation loss
    warm-up    LinearLR from lr/100 over warmup_steps, before any of them (SequentialLR)

Its state goes into the training state file, so a resumed run continues the same curve.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch.optim import lr_scheduler

SCHEDULES = ("constant", "cosine", "step", "plateau")
WARMUP_START = 0.01  # warm-up begins at a hundredth of lr


class Schedule:
    """The run's learning-rate schedule on ``optimizer``; ``settings`` is the run's ``Settings``."""

    def __init__(self, optimizer: torch.optim.Optimizer, settings: Any, steps_per_epoch: int):
        self.optimizer = optimizer
        horizon = (settings.schedule_epochs or settings.epochs) * steps_per_epoch
        warm = settings.warmup_steps
        parts: list[tuple[lr_scheduler.LRScheduler, int]] = []  # each scheduler and the steps it runs for
        if warm:
            parts.append((lr_scheduler.LinearLR(optimizer, WARMUP_START, 1.0, total_iters=warm), warm))
        if settings.lr_schedule == "cosine":  # and past the horizon (a run extended on resume) stay at lr_min
            span = max(1, horizon - warm)
            parts.append((lr_scheduler.CosineAnnealingLR(optimizer, T_max=span, eta_min=settings.lr_min), span))
            parts.append((lr_scheduler.ConstantLR(optimizer, settings.lr_min / settings.lr, total_iters=2**62), 0))
        elif settings.lr_schedule == "step":
            parts.append(
                (lr_scheduler.StepLR(optimizer, settings.lr_step_epochs * steps_per_epoch, settings.lr_gamma), 0)
            )
        main: lr_scheduler.LRScheduler | None = parts[0][0] if len(parts) == 1 else None
        if len(parts) > 1:
            milestones = list(itertools.accumulate(steps for _, steps in parts[:-1]))
            main = lr_scheduler.SequentialLR(optimizer, [s for s, _ in parts], milestones=milestones)
        self.per_step = main
        self.plateau = (
            lr_scheduler.ReduceLROnPlateau(optimizer, factor=settings.lr_gamma, patience=settings.lr_patience)
            if settings.lr_schedule == "plateau"
            else None
        )

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def after_step(self) -> None:
        if self.per_step is not None:
            self.per_step.step()

    def after_epoch(self, val_loss: float) -> None:
        if self.plateau is not None:
            self.plateau.step(val_loss)

    def state_dict(self) -> dict[str, Any]:
        return {
            "per_step": self.per_step.state_dict() if self.per_step is not None else None,
            "plateau": self.plateau.state_dict() if self.plateau is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.per_step is not None and state.get("per_step") is not None:
            self.per_step.load_state_dict(state["per_step"])
        if self.plateau is not None and state.get("plateau") is not None:
            self.plateau.load_state_dict(state["plateau"])
