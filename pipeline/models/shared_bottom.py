"""Shared-bottom multi-task network and ESMM (Ma et al., SIGIR 2018).

Shape notation: B batch, F categorical fields, N numeric features, H hidden dim.
"""
from __future__ import annotations

from torch import Tensor, nn

from pipeline.models.modules import MLP, SharedInput, Tower
from pipeline.models.spec import ModelSpec


class SharedBottom(nn.Module):
    """Shared input and MLP, then one tower per task in ``spec.tasks``.

    Args:
        spec: model hyper-parameters.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.outputs = spec.tasks
        self.input = SharedInput(spec.cardinalities, spec.embedding_dim, spec.num_numeric, spec.interaction)
        self.bottom = MLP(self.input.output_dim, spec.bottom_hidden, spec.dropout)
        self.towers = nn.ModuleDict(
            {task: Tower(self.bottom.output_dim, spec.tower_hidden, spec.dropout) for task in self.outputs})

    def forward(self, cat: Tensor, num: Tensor) -> dict[str, Tensor]:
        """Apply the shared bottom, then each tower.

        Args:
            cat: [B, F] long categorical ids.
            num: [B, N] float numeric features.

        Returns:
            ``{task: [B] logits}`` for each task in ``spec.tasks``.
        """
        shared = self.bottom(self.input(cat, num))  # [B, H]
        return {task: tower(shared) for task, tower in self.towers.items()}

    def shared_parameters(self) -> list[nn.Parameter]:
        """The last shared bottom layer (the embedding table when the bottom has no layer)."""
        return self.bottom.last_layer_parameters() or list(self.input.parameters())


class ESMM(nn.Module):
    """Entire Space Multi-task Model: a CTR tower and a CVR tower over shared embeddings.

    Only the embeddings are shared, as in the paper; each tower is an MLP of
    ``bottom_hidden + tower_hidden``. pCTCVR = pCTR * pCVR is computed outside the network,
    from probabilities (``objectives.probabilities``). A ``"value"`` tower is added when
    ``"value"`` is in ``spec.tasks``; ``"cvr"`` is always there.

    Args:
        spec: model hyper-parameters (``cvr_mode`` is not used: ESMM is entire-space).
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.outputs = ("ctr", "cvr", "value") if "value" in spec.tasks else ("ctr", "cvr")
        self.input = SharedInput(spec.cardinalities, spec.embedding_dim, spec.num_numeric, spec.interaction)
        hidden = (*spec.bottom_hidden, *spec.tower_hidden)
        self.towers = nn.ModuleDict(
            {task: Tower(self.input.output_dim, hidden, spec.dropout) for task in self.outputs})

    def forward(self, cat: Tensor, num: Tensor) -> dict[str, Tensor]:
        """Apply each tower to the shared embeddings.

        Args:
            cat: [B, F] long categorical ids.
            num: [B, N] float numeric features.

        Returns:
            ``{"ctr", "cvr"(, "value"): [B] logits}``.
        """
        shared = self.input(cat, num)  # [B, F * D + N (+ D)]
        return {task: tower(shared) for task, tower in self.towers.items()}

    def shared_parameters(self) -> list[nn.Parameter]:
        """The embedding table, the only layer the towers share."""
        return list(self.input.parameters())
