"""How the per-task losses add up to the one loss that is minimised.

``fixed``: constant weights. ``uncertainty``: homoscedastic uncertainty weighting (Kendall,
Gal and Cipolla, CVPR 2018), learned by the model's optimizer. ``gradnorm``: GradNorm (Chen et
al., ICML 2018), learned by an optimizer of its own inside ``total``.

Shape notation: T tasks (loss terms), A tasks active in a GradNorm step.
"""
from __future__ import annotations

import abc
import math
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

WEIGHTINGS = ("fixed", "uncertainty", "gradnorm")


class LossWeighting(nn.Module, abc.ABC):
    """Weights the loss terms named ``task_names``; ``total`` is what to call backward on.

    Args:
        task_names: the keys ``total`` expects in its ``losses``.
    """

    def __init__(self, task_names: Sequence[str]) -> None:
        super().__init__()
        self.task_names = tuple(task_names)

    @abc.abstractmethod
    def total(self, losses: Mapping[str, Tensor], shared_params: Sequence[nn.Parameter]) -> Tensor:
        """The weighted sum of the losses.

        Args:
            losses: one scalar per name in ``task_names``.
            shared_params: the model's last shared layer (``model.shared_parameters()``);
                used by GradNorm only.

        Returns:
            A scalar.
        """

    @abc.abstractmethod
    def weights(self) -> dict[str, float]:
        """The current weight of each loss term."""

    def _stack(self, losses: Mapping[str, Tensor]) -> Tensor:
        """The losses in ``task_names`` order, [T]; ValueError unless the names match."""
        if set(losses) != set(self.task_names):
            raise ValueError(f"expected losses {sorted(self.task_names)}, got {sorted(losses)}")
        return torch.stack([losses[name] for name in self.task_names])  # [T]


class FixedWeighting(LossWeighting):
    """Constant weights.

    Args:
        task_names: loss names.
        fixed: weight per name; a name left out has weight 1.0.
    """

    def __init__(self, task_names: Sequence[str], fixed: Mapping[str, float] | None = None) -> None:
        super().__init__(task_names)
        fixed = dict(fixed or {})
        unknown = set(fixed) - set(self.task_names)
        if unknown:
            raise ValueError(f"fixed weights for unknown losses {sorted(unknown)}; losses: {list(self.task_names)}")
        self.register_buffer("task_weights", torch.tensor([float(fixed.get(n, 1.0)) for n in self.task_names]))

    def total(self, losses: Mapping[str, Tensor], shared_params: Sequence[nn.Parameter]) -> Tensor:
        return (self.task_weights * self._stack(losses)).sum()  # [T] -> scalar

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self.task_weights.tolist()))


class UncertaintyWeighting(LossWeighting):
    """Kendall et al.: total = sum_i exp(-s_i) * L_i + s_i, with s_i = log sigma_i^2 learned.

    The paper's 1/2 factors (which differ between regression and classification terms) are
    left out, as in most implementations: each s_i still settles at log L_i, so each term is
    weighted by about 1 / L_i. Add ``parameters()`` to the model's optimizer.

    A term that is exactly 0 on a batch (a masked loss without its rows, an inactive
    calibrator) says nothing about its noise: it is left out of that step, else its s_i would
    fall without bound.

    Args:
        task_names: loss names.
    """

    def __init__(self, task_names: Sequence[str]) -> None:
        super().__init__(task_names)
        self.log_variances = nn.Parameter(torch.zeros(len(self.task_names)))  # [T]

    def total(self, losses: Mapping[str, Tensor], shared_params: Sequence[nn.Parameter]) -> Tensor:
        stacked = self._stack(losses)  # [T]
        terms = torch.exp(-self.log_variances) * stacked + self.log_variances  # [T]
        return torch.where(stacked != 0, terms, torch.zeros_like(terms)).sum()  # [T] -> scalar

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, torch.exp(-self.log_variances.detach()).tolist()))


class GradNormWeighting(LossWeighting):
    """GradNorm: weights w_i that balance the gradient norms of the weighted losses.

    On each ``total`` call, for every active task i: G_i = ||grad_W (w_i L_i)|| = w_i ||grad_W
    L_i|| over the shared layer W (one ``autograd.grad`` per task; the norm is a constant, so
    G_i is linear in w_i and no second-order graph is needed). With r_i the inverse training
    rate L_i / L_i(0) divided by its mean over active tasks, the target is mean(G) * r_i^alpha
    (a constant, as in the paper). One step of an internal Adam on sum_i |G_i - target_i|
    updates w, which is then kept positive and renormalized to sum to T. The returned total
    uses the weights from before that step, detached, as in the paper's algorithm; w never
    gets a gradient from it, so an outer optimizer given ``parameters()`` leaves w alone.

    A task is active once its loss has been positive with a gradient path to W: its L_i(0) is
    recorded on that call. Inactive tasks (a masked loss on a batch without its rows, an
    inactive calibrator) are left out of the step, apart from the renormalization. In eval
    mode w is not updated.

    Args:
        task_names: loss names.
        alpha: the asymmetry alpha; larger pulls harder towards equal training rates.
        lr: learning rate of the internal Adam on w.
    """

    # Floor of a weight, so that a task is never switched off entirely.
    MIN_WEIGHT = 1e-3

    def __init__(self, task_names: Sequence[str], alpha: float, lr: float) -> None:
        super().__init__(task_names)
        self.alpha = alpha
        self.task_weights = nn.Parameter(torch.ones(len(self.task_names)))  # [T]
        self.register_buffer("initial_losses", torch.full((len(self.task_names),), math.nan))  # [T]
        self._optimizer = torch.optim.Adam([self.task_weights], lr=lr)

    def total(self, losses: Mapping[str, Tensor], shared_params: Sequence[nn.Parameter]) -> Tensor:
        stacked = self._stack(losses)  # [T]
        weights_before = self.task_weights.detach().clone()  # [T]
        if self.training:
            self._update(stacked, list(shared_params))
        return (weights_before * stacked).sum()  # [T] -> scalar

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self.task_weights.detach().tolist()))

    def get_extra_state(self) -> dict:
        """The internal Adam's state, so that a checkpoint resumes the same updates of w."""
        return {"optimizer": self._optimizer.state_dict()}

    def set_extra_state(self, state: dict) -> None:
        """Restore what ``get_extra_state`` saved."""
        self._optimizer.load_state_dict(state["optimizer"])

    def _update(self, losses: Tensor, shared_params: list[nn.Parameter]) -> None:
        """One GradNorm step on w from the current losses [T]."""
        if not shared_params:
            raise ValueError("gradnorm needs the model's shared parameters (model.shared_parameters())")
        active, grad_norms = [], []
        for i, loss in enumerate(losses):
            if not loss.requires_grad or loss.item() <= 0:
                continue
            grads = torch.autograd.grad(loss, shared_params, retain_graph=True, allow_unused=True)
            squares = [g.pow(2).sum() for g in grads if g is not None]
            norm = torch.stack(squares).sum().sqrt() if squares else None  # ||grad_W L_i||
            if norm is None or norm.item() == 0:
                continue
            if math.isnan(self.initial_losses[i].item()):
                self.initial_losses[i] = loss.detach()
            active.append(i)
            grad_norms.append(norm.to(self.task_weights.device))
        if not active:
            return

        index = torch.tensor(active, device=self.task_weights.device)
        norms = self.task_weights[index] * torch.stack(grad_norms)  # [A] G_i, differentiable in w
        loss_ratios = losses.detach()[index].to(norms.device) / self.initial_losses[index]  # [A]
        inverse_rates = loss_ratios / loss_ratios.mean()  # [A]
        targets = (norms.mean() * inverse_rates.pow(self.alpha)).detach()  # [A]
        gradnorm_loss = (norms - targets).abs().sum()

        self._optimizer.zero_grad(set_to_none=True)
        self.task_weights.grad = torch.autograd.grad(gradnorm_loss, self.task_weights)[0]
        self._optimizer.step()
        self.task_weights.grad = None
        with torch.no_grad():
            self.task_weights.clamp_(min=self.MIN_WEIGHT)
            self.task_weights.mul_(len(self.task_names) / self.task_weights.sum())


def make_weighting(
    kind: str,
    task_names: list[str],
    fixed: dict[str, float] | None = None,
    gradnorm_alpha: float = 1.5,
    gradnorm_lr: float = 0.025,
) -> LossWeighting:
    """Build a loss weighting.

    Args:
        kind: ``"fixed"``, ``"uncertainty"`` or ``"gradnorm"``.
        task_names: the loss names it weights (e.g. ``objectives.loss_names(name, spec)``).
        fixed: weights by name for ``"fixed"`` (1.0 for a name left out); only for ``"fixed"``.
        gradnorm_alpha: GradNorm's alpha.
        gradnorm_lr: learning rate of GradNorm's internal Adam.

    Returns:
        A ``LossWeighting``; for ``"uncertainty"`` add its ``parameters()`` to the optimizer.

    Raises:
        ValueError: for an unknown kind, no or repeated task names, or ``fixed`` with another kind.
    """
    if kind not in WEIGHTINGS:
        raise ValueError(f"unknown loss weighting {kind!r}; known: {', '.join(WEIGHTINGS)}")
    if not task_names or len(set(task_names)) != len(task_names):
        raise ValueError(f"task_names must be distinct and non-empty, got {task_names}")
    if fixed and kind != "fixed":
        raise ValueError(f"fixed weights are only for kind 'fixed', not {kind!r}")
    if kind == "fixed":
        return FixedWeighting(task_names, fixed)
    if kind == "uncertainty":
        return UncertaintyWeighting(task_names)
    return GradNormWeighting(task_names, alpha=gradnorm_alpha, lr=gradnorm_lr)
