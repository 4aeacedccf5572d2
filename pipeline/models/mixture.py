"""Mixture-of-experts multi-task networks: OMoE, MMoE (Ma et al., KDD 2018) and PLE (Tang et
al., RecSys 2020).

Shape notation: B batch, F categorical fields, N numeric features, E experts, H hidden dim.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from pipeline.models.experts import Experts, ExtractionLayer, Gate, joint_linear, mix, mix_per_task
from pipeline.models.modules import SharedInput, Tower
from pipeline.models.shared_bottom import MultiTaskModel
from pipeline.models.spec import Inputs, ModelSpec


class MixtureOfExperts(MultiTaskModel):
    """Shared experts mixed by one gate for all tasks (OMoE) or one gate per task (MMoE).

    Args:
        spec: hyper-parameters; one tower per task in ``spec.tasks``.
        inputs: the shape of the encoded input.
    """

    gate_per_task: bool

    def __init__(self, spec: ModelSpec, inputs: Inputs) -> None:
        super().__init__(spec, inputs)
        self.input = SharedInput(inputs.cardinalities, spec.embedding_dim, inputs.num_numeric, spec.interaction)
        self.experts = Experts(spec.num_experts, self.input.output_dim, spec.expert_hidden, spec.dropout)
        self.gates = nn.ModuleList(
            Gate(self.input.output_dim, spec.num_experts) for _ in (self.outputs if self.gate_per_task else [None]))
        self.towers = nn.ModuleDict(
            {task: Tower(self.experts.output_dim, spec.tower_hidden, spec.dropout) for task in self.outputs})

    def deep(self, cat: Tensor, num: Tensor) -> dict[str, Tensor]:
        """Mixes the experts for each task, then applies the towers: ``{task: [B] logits}``."""
        x = self.input(cat, num)  # [B, I]
        experts = self.experts(x)  # [B, E, H]
        logits = joint_linear([gate.linear for gate in self.gates], x)  # [B, G * E], G gates
        gates = torch.softmax(logits.view(len(x), len(self.gates), -1), dim=-1)  # [B, G, E]
        if len(self.gates) == 1:  # OMoE: every task reads the same mixture
            mixed = [mix(gates[:, 0], experts)] * len(self.towers)  # T x [B, H]
        else:
            mixed = mix_per_task(gates, experts).unbind(1)  # [B, T, H] -> T x [B, H]
        return {task: tower(h) for (task, tower), h in zip(self.towers.items(), mixed)}

    def shared_parameters(self) -> list[nn.Parameter]:
        """The last layer of every expert (the experts are what the tasks share)."""
        return self.experts.last_layer_parameters()


class OMoE(MixtureOfExperts):
    """One-gate mixture of experts: every task reads the same mixture."""

    name = "omoe"
    gate_per_task = False


class MMoE(MixtureOfExperts):
    """Multi-gate mixture of experts (Ma et al., KDD 2018): a gate per task."""

    name = "mmoe"
    gate_per_task = True


class PLE(MultiTaskModel):
    """Progressive Layered Extraction: ``spec.ple_layers`` stacked CGC layers, then towers.

    Args:
        spec: hyper-parameters; one tower per task in ``spec.tasks``.
        inputs: the shape of the encoded input.
    """

    name = "ple"

    def __init__(self, spec: ModelSpec, inputs: Inputs) -> None:
        super().__init__(spec, inputs)
        self.input = SharedInput(inputs.cardinalities, spec.embedding_dim, inputs.num_numeric, spec.interaction)
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

    def deep(self, cat: Tensor, num: Tensor) -> dict[str, Tensor]:
        """Runs the extraction layers, then the towers: ``{task: [B] logits}``."""
        shared = self.input(cat, num)  # [B, I]
        task_inputs = [shared] * len(self.towers)
        for layer in self.layers:
            task_inputs, shared = layer(task_inputs, shared)  # T x [B, H], [B, H] or None
        return {task: tower(h) for (task, tower), h in zip(self.towers.items(), task_inputs)}

    def shared_parameters(self) -> list[nn.Parameter]:
        """The last layer of the shared experts of the last extraction layer."""
        return self.layers[-1].shared_experts.last_layer_parameters()
