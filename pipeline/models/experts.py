"""The mixture-of-experts blocks: experts side by side, their gates, the mixtures, and PLE's
extraction layer (used by ``pipeline.models.mixture``).

Shape notation: B batch, I input dim, H hidden dim, E experts, T tasks.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from pipeline.models.modules import MLP


class Experts(nn.Module):
    """E independent MLPs over the same input.

    Args:
        num_experts: E.
        input_dim: I.
        hidden: hidden sizes of each expert (non-empty).
        dropout: dropout probability after each hidden layer.
    """

    def __init__(self, num_experts: int, input_dim: int, hidden: Sequence[int], dropout: float) -> None:
        super().__init__()
        self.experts = nn.ModuleList(MLP(input_dim, hidden, dropout) for _ in range(num_experts))
        self.num_experts = num_experts
        self.output_dim = self.experts[0].output_dim

    def forward(self, x: Tensor) -> Tensor:
        """Run every expert.

        Args:
            x: [B, I].

        Returns:
            [B, E, H] expert outputs.
        """
        # The first layer of every expert in one matrix product over the shared input: the same
        # weights (each expert keeps its own), one product of E times the width instead of E
        # narrow ones and a stack.
        linears, activations, rests = zip(*(expert.split_first() for expert in self.experts))
        h = activations[0](joint_linear(linears, x))  # [B, E * H1]; the activation is the same for all
        if not len(rests[0]):  # one hidden layer: the experts' outputs side by side
            return h.view(len(x), self.num_experts, -1)  # [B, E, H]
        parts = h.chunk(self.num_experts, dim=1)  # E x [B, H1]
        return torch.stack([rest(part) for rest, part in zip(rests, parts)], dim=1)  # [B, E, H]

    def last_layer_parameters(self) -> list[nn.Parameter]:
        """Parameters of the last Linear layer of every expert."""
        return [p for expert in self.experts for p in expert.last_layer_parameters()]


class Gate(nn.Module):
    """Softmax mixture weights over E experts, computed from the input.

    Args:
        input_dim: I.
        num_experts: E.
    """

    def __init__(self, input_dim: int, num_experts: int) -> None:
        super().__init__()
        self.linear = nn.Linear(input_dim, num_experts)
        self.output_dim = num_experts

    def forward(self, x: Tensor) -> Tensor:
        """Compute the mixture weights.

        Args:
            x: [B, I].

        Returns:
            [B, E] weights, each row sums to 1.
        """
        return torch.softmax(self.linear(x), dim=-1)  # [B, E]


def joint_linear(linears: Sequence[nn.Linear], x: Tensor) -> Tensor:
    """Every linear layer of ``linears`` over the same ``x`` [B, I], in one matrix product:
    [B, sum of their outputs], each layer's outputs in turn."""
    weight = torch.cat([linear.weight for linear in linears])  # [O, I]
    bias = torch.cat([linear.bias for linear in linears])  # [O]
    return torch.addmm(bias, x, weight.t())  # [B, O]


def mix_per_task(gates: Tensor, experts: Tensor) -> Tensor:
    """Gate-weighted sums of the same expert outputs, one per gate.

    Args:
        gates: [B, T, E] weights.
        experts: [B, E, H] outputs.

    Returns:
        [B, T, H].
    """
    # One batched product for all gates: about half the time of T broadcast products (``mix``)
    # with their backward; a batched product per gate ([B, 1, E] x [B, E, H]) is slower than both.
    return torch.bmm(gates, experts)


def mix(gate: Tensor, experts: Tensor) -> Tensor:
    """Gate-weighted sum of expert outputs.

    Args:
        gate: [B, E] weights.
        experts: [B, E, H] outputs.

    Returns:
        [B, H].
    """
    # A broadcast product and a sum: einsum would run B matrix products of [1, E] x [E, H], which on
    # CPU cost more than the experts themselves.
    return (gate.unsqueeze(-1) * experts).sum(dim=1)  # [B, E, 1] * [B, E, H] -> [B, H]


class ExtractionLayer(nn.Module):
    """One PLE extraction layer (Customized Gate Control, Tang et al., RecSys 2020).

    Each task mixes its own experts and the shared experts with its own gate. Unless this is
    the last layer, a shared gate also mixes all experts into the next layer's shared input.

    Args:
        num_tasks: T.
        input_dim: I, the size of every task input and of the shared input.
        num_shared_experts: shared experts.
        num_task_experts: experts per task.
        hidden: hidden sizes of each expert.
        dropout: dropout probability after each hidden layer.
        is_last: the last layer computes no shared output.
    """

    def __init__(
        self,
        num_tasks: int,
        input_dim: int,
        num_shared_experts: int,
        num_task_experts: int,
        hidden: Sequence[int],
        dropout: float,
        is_last: bool,
    ) -> None:
        super().__init__()
        self.task_experts = nn.ModuleList(
            Experts(num_task_experts, input_dim, hidden, dropout) for _ in range(num_tasks))
        self.shared_experts = Experts(num_shared_experts, input_dim, hidden, dropout)
        self.task_gates = nn.ModuleList(
            Gate(input_dim, num_task_experts + num_shared_experts) for _ in range(num_tasks))
        self.shared_gate = (
            None if is_last else Gate(input_dim, num_tasks * num_task_experts + num_shared_experts))
        self.output_dim = self.shared_experts.output_dim

    def forward(self, task_inputs: list[Tensor], shared_input: Tensor) -> tuple[list[Tensor], Tensor | None]:
        """Mix own and shared experts per task (and all experts for the shared output).

        Args:
            task_inputs: T tensors [B, I], one per task.
            shared_input: [B, I].

        Returns:
            T task outputs [B, H], and the shared output [B, H] (None for the last layer).
        """
        shared = self.shared_experts(shared_input)  # [B, Es, H]
        per_task = [experts(x) for experts, x in zip(self.task_experts, task_inputs)]  # T x [B, Et, H]
        task_outputs = [
            mix(gate(x), torch.cat([own, shared], dim=1))  # [B, Et + Es, H] -> [B, H]
            for gate, x, own in zip(self.task_gates, task_inputs, per_task)
        ]
        if self.shared_gate is None:
            return task_outputs, None
        everything = torch.cat([*per_task, shared], dim=1)  # [B, T * Et + Es, H]
        return task_outputs, mix(self.shared_gate(shared_input), everything)  # [B, H]
