"""AITM: Adaptive Information Transfer Multi-task network (Xi et al., KDD 2021).

The conversion head is trained on conversions over all exposures, so it estimates pCTCVR
and is named ``"ctcvr"``; pCVR = pCTCVR / pCTR is derived outside the network.

Shape notation: B batch, F categorical fields, N numeric features, H hidden dim.
"""
from __future__ import annotations

from torch import Tensor, nn

from pipeline.models.modules import MLP, InformationTransfer, SharedInput, Tower
from pipeline.models.spec import ModelSpec


class AITM(nn.Module):
    """Per-task encoders over shared embeddings, chained click -> conversion (-> value).

    Each task ``t`` encodes the shared input with its own MLP of ``spec.bottom_hidden`` into
    ``q_t``. The first task uses ``z_1 = q_1``; each later task mixes the transferred ``z_{t-1}``
    and its own ``q_t`` with an attention (``InformationTransfer``) into ``z_t``. A tower of
    ``spec.tower_hidden`` turns each ``z_t`` into the task output. The optional value task comes
    last in the chain, since a value exists only after a conversion.

    Args:
        spec: model hyper-parameters (``cvr_mode`` is not used: AITM is entire-space).
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.outputs = ("ctr", "ctcvr", "value") if "value" in spec.tasks else ("ctr", "ctcvr")
        self.input = SharedInput(spec.cardinalities, spec.embedding_dim, spec.num_numeric, spec.interaction)
        self.encoders = nn.ModuleDict(
            {task: MLP(self.input.output_dim, spec.bottom_hidden, spec.dropout) for task in self.outputs})
        dim = self.encoders["ctr"].output_dim
        self.transfers = nn.ModuleDict({task: InformationTransfer(dim, spec.dropout) for task in self.outputs[1:]})
        self.towers = nn.ModuleDict({task: Tower(dim, spec.tower_hidden, spec.dropout) for task in self.outputs})

    def forward(self, cat: Tensor, num: Tensor) -> dict[str, Tensor]:
        """Run the task chain.

        Args:
            cat: [B, F] long categorical ids.
            num: [B, N] float numeric features.

        Returns:
            ``{"ctr", "ctcvr"(, "value"): [B] logits}``.
        """
        shared = self.input(cat, num)  # [B, I]
        logits = {}
        previous = None
        for task in self.outputs:
            z = self.encoders[task](shared)  # [B, H]
            if previous is not None:
                z = self.transfers[task](previous, z)  # [B, H]
            logits[task] = self.towers[task](z)  # [B]
            previous = z
        return logits

    def shared_parameters(self) -> list[nn.Parameter]:
        """The embedding table, the only layer all tasks share."""
        return list(self.input.parameters())
