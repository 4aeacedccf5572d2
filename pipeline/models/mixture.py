"""Mixture-of-experts multi-task networks: OMoE, MMoE (Ma et al., KDD 2018) and PLE (Tang et
al., RecSys 2020).

Shape notation: B batch, F categorical fields, N numeric features, E experts, H hidden dim.
"""
from __future__ import annotations

from torch import Tensor, nn

from pipeline.models.modules import Experts, ExtractionLayer, Gate, SharedInput, Tower, mix
from pipeline.models.spec import ModelSpec


class MixtureOfExperts(nn.Module):
    """Shared experts mixed by one gate for all tasks (OMoE) or one gate per task (MMoE).

    Args:
        spec: model hyper-parameters; one tower per task in ``spec.tasks``.
        gate_per_task: MMoE when true, OMoE when false.
    """

    def __init__(self, spec: ModelSpec, gate_per_task: bool) -> None:
        super().__init__()
        self.outputs = spec.tasks
        self.input = SharedInput(spec.cardinalities, spec.embedding_dim, spec.num_numeric, spec.interaction)
        self.experts = Experts(spec.num_experts, self.input.output_dim, spec.expert_hidden, spec.dropout)
        self.gates = nn.ModuleList(
            Gate(self.input.output_dim, spec.num_experts) for _ in (self.outputs if gate_per_task else [None]))
        self.towers = nn.ModuleDict(
            {task: Tower(self.experts.output_dim, spec.tower_hidden, spec.dropout) for task in self.outputs})

    def forward(self, cat: Tensor, num: Tensor) -> dict[str, Tensor]:
        """Mix the experts for each task, then apply the towers.

        Args:
            cat: [B, F] long categorical ids.
            num: [B, N] float numeric features.

        Returns:
            ``{task: [B] logits}`` for each task in ``spec.tasks``.
        """
        x = self.input(cat, num)  # [B, I]
        experts = self.experts(x)  # [B, E, H]
        mixed = [mix(gate(x), experts) for gate in self.gates]  # T (MMoE) or 1 (OMoE) x [B, H]
        if len(mixed) == 1:  # OMoE: every task reads the same mixture
            mixed = mixed * len(self.towers)
        return {task: tower(h) for (task, tower), h in zip(self.towers.items(), mixed)}

    def shared_parameters(self) -> list[nn.Parameter]:
        """The last layer of every expert (the experts are what the tasks share)."""
        return self.experts.last_layer_parameters()


class PLE(nn.Module):
    """Progressive Layered Extraction: ``spec.ple_layers`` stacked CGC layers, then towers.

    Args:
        spec: model hyper-parameters; one tower per task in ``spec.tasks``.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.outputs = spec.tasks
        self.input = SharedInput(spec.cardinalities, spec.embedding_dim, spec.num_numeric, spec.interaction)
        layers = []
        input_dim = self.input.output_dim
        for index in range(spec.ple_layers):
            layer = ExtractionLayer(
                num_tasks=len(self.outputs),
                input_dim=input_dim,
                num_shared_experts=spec.num_shared_experts,
                num_task_experts=spec.num_task_experts,
                hidden=spec.expert_hidden,
                dropout=spec.dropout,
                is_last=index == spec.ple_layers - 1,
            )
            layers.append(layer)
            input_dim = layer.output_dim
        self.layers = nn.ModuleList(layers)
        self.towers = nn.ModuleDict(
            {task: Tower(input_dim, spec.tower_hidden, spec.dropout) for task in self.outputs})

    def forward(self, cat: Tensor, num: Tensor) -> dict[str, Tensor]:
        """Run the extraction layers, then the towers.

        Args:
            cat: [B, F] long categorical ids.
            num: [B, N] float numeric features.

        Returns:
            ``{task: [B] logits}`` for each task in ``spec.tasks``.
        """
        shared = self.input(cat, num)  # [B, I]
        task_inputs = [shared] * len(self.towers)
        for layer in self.layers:
            task_inputs, shared = layer(task_inputs, shared)  # T x [B, H], [B, H] or None
        return {task: tower(h) for (task, tower), h in zip(self.towers.items(), task_inputs)}

    def shared_parameters(self) -> list[nn.Parameter]:
        """The last layer of the shared experts of the last extraction layer."""
        return self.layers[-1].shared_experts.last_layer_parameters()
