"""Single-task DNN: the ``ctr_dnn``, ``cvr_naive`` and ``reweight`` baselines.

The three share one network and differ in their output key and objective (see
``objectives.py``): ``cvr_naive`` trains its ``"cvr"`` logit on clicked exposures only, and
``reweight`` trains its ``"ctr"`` logit with conversion- and value-dependent sample weights.

Shape notation: B batch, F categorical fields, N numeric features.
"""
from __future__ import annotations

from torch import Tensor, nn

from pipeline.models.modules import MLP, SharedInput, Tower
from pipeline.models.spec import ModelSpec


class SingleTaskDNN(nn.Module):
    """Shared input, an MLP of ``spec.bottom_hidden``, one output unit.

    Args:
        spec: model hyper-parameters (``tasks`` and ``tower_hidden`` are not used).
        task: the one output key, ``"ctr"`` or ``"cvr"``.
    """

    def __init__(self, spec: ModelSpec, task: str) -> None:
        super().__init__()
        self.outputs = (task,)
        self.input = SharedInput(spec.cardinalities, spec.embedding_dim, spec.num_numeric, spec.interaction)
        self.bottom = MLP(self.input.output_dim, spec.bottom_hidden, spec.dropout)
        self.head = Tower(self.bottom.output_dim, (), spec.dropout)

    def forward(self, cat: Tensor, num: Tensor) -> dict[str, Tensor]:
        """Apply the bottom and the output unit.

        Args:
            cat: [B, F] long categorical ids.
            num: [B, N] float numeric features.

        Returns:
            ``{task: [B] logits}``.
        """
        return {self.outputs[0]: self.head(self.bottom(self.input(cat, num)))}

    def shared_parameters(self) -> list[nn.Parameter]:
        """The last bottom layer (the embedding table when the bottom has no layer)."""
        return self.bottom.last_layer_parameters() or list(self.input.parameters())
