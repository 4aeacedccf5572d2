"""Small building blocks of the ranking networks, each built from ints and lists.

Every module exposes ``output_dim``, the size of the last dimension of what it returns. The
mixture-of-experts blocks are in ``pipeline.models.experts``.

Shape notation: B batch, F categorical fields, D embedding dim, N numeric features,
I input dim, H hidden dim.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


class FusedEmbedding(nn.Module):
    """All categorical features in one embedding table, feature ``f`` at rows ``offsets[f]:``.

    One table means one lookup per batch instead of a Python loop over per-feature tables.

    Args:
        cardinalities: vocabulary size of each feature, including id 0 (unknown).
        dim: embedding size D.
        init_std: standard deviation of the normal initialisation. Not too small: the gradient
            of a pairwise product through one embedding is the other embedding, so with 0.01
            the user x item interaction barely moves in the first epochs.
    """

    def __init__(self, cardinalities: Sequence[int], dim: int, init_std: float = 0.1) -> None:
        super().__init__()
        sizes = torch.tensor(list(cardinalities), dtype=torch.long)
        # Exclusive cumulative sum: feature f starts where features 0..f-1 end.
        self.register_buffer("offsets", torch.cumsum(sizes, 0) - sizes)  # [F]
        self.embedding = nn.Embedding(int(sizes.sum()), dim)
        nn.init.normal_(self.embedding.weight, std=init_std)
        self.num_features = len(sizes)
        self.dim = dim
        self.output_dim = self.num_features * dim

    def forward(self, ids: Tensor) -> Tensor:
        """Look up every field of every row.

        Args:
            ids: [B, F] long; ids of feature ``f`` in ``[0, cardinalities[f])`` (an id past
                the end would silently read the next feature's rows).

        Returns:
            [B, F, D] embeddings.
        """
        rows = (ids + self.offsets).reshape(-1)  # [B, F] + [F] -> [B * F]
        # index_select, not nn.Embedding's lookup: the same rows, but its backward adds the
        # gradient rows with index_add (one pass), where the embedding's backward sorts the ids
        # first (about 5x slower on CPU at B * F = 32k).
        return self.embedding.weight.index_select(0, rows).view(*ids.shape, self.dim)  # [B, F, D]


class Dropout(nn.Module):
    """Dropout (inverted, as ``nn.Dropout``) whose mask costs one random draw per 4 entries.

    ``nn.Dropout`` draws one random float per entry (``bernoulli_``), which on CPU takes most of
    the time of a tower's forward pass; here one 64-bit draw gives four 16-bit uniform numbers,
    and an entry is kept when its number is at least ``round(p * 2**16)``: ``p`` rounded to a
    multiple of 1/65536. The draws come from torch's global generator, so the masks follow
    ``torch.manual_seed`` (and a checkpoint's RNG state) like ``nn.Dropout``'s.

    Args:
        p: probability of zeroing an entry, in ``[0, 1)``.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.cut = round(p * 2**16) - 2**15  # keep a uniform int16 u when u >= cut
        self.scale = 2**16 / (2**16 - round(p * 2**16))  # 1 / (1 - p rounded)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` [...] with entries zeroed at random and the rest scaled (training), else ``x``."""
        if not self.training or self.cut == -2**15:
            return x
        words = torch.randint(-2**63, 2**63 - 1, (-(-x.numel() // 4),), dtype=torch.long)  # [ceil(n / 4)]
        uniform = words.view(torch.int16)[:x.numel()].view(x.shape)  # [...] uniform in [-2^15, 2^15)
        return x * torch.where(uniform >= self.cut, self.scale, 0.0).to(x.dtype)  # [...]

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Wide(nn.Module):
    """A linear model per output over one-hot categorical ids and the numerics (the wide part of
    wide & deep, Cheng et al., DLRS 2016): one weight per field value and output, starting at 0.

    Args:
        cardinalities: vocabulary size of each categorical feature, including id 0.
        num_numeric: N (may be 0).
        num_outputs: O.
    """

    def __init__(self, cardinalities: Sequence[int], num_numeric: int, num_outputs: int) -> None:
        super().__init__()
        self.weights = FusedEmbedding(cardinalities, num_outputs, init_std=0.0)
        self.linear = nn.Linear(num_numeric, num_outputs)  # the numerics' weights and the biases
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.output_dim = num_outputs

    def forward(self, cat: Tensor, num: Tensor) -> Tensor:
        """[B, O] logits from ``cat`` [B, F] ids and ``num`` [B, N]."""
        return self.weights(cat).sum(dim=1) + self.linear(num)  # [B, F, O] -> [B, O]


class PairwiseInteraction(nn.Module):
    """Factorization-machine second-order term: the sum of all pairwise field products.

    Args:
        dim: embedding size D.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.output_dim = dim

    def forward(self, embeddings: Tensor) -> Tensor:
        """Sum over field pairs ``i < j`` of ``e_i * e_j`` in O(F D).

        Args:
            embeddings: [B, F, D].

        Returns:
            [B, D], ``0.5 * ((sum_f e_f)^2 - sum_f e_f^2)``.
        """
        square_of_sum = embeddings.sum(dim=1).pow(2)  # [B, D]
        sum_of_squares = embeddings.pow(2).sum(dim=1)  # [B, D]
        return 0.5 * (square_of_sum - sum_of_squares)  # [B, D]


class MLP(nn.Module):
    """Linear, ReLU, Dropout for each hidden size; the identity when ``hidden`` is empty.

    Args:
        input_dim: I.
        hidden: hidden sizes, in order.
        dropout: dropout probability after each hidden layer.
    """

    def __init__(self, input_dim: int, hidden: Sequence[int], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for in_dim, out_dim in zip([input_dim, *hidden], hidden):
            layers += [nn.Linear(in_dim, out_dim), nn.ReLU(), Dropout(dropout)]
        self.layers = nn.Sequential(*layers)
        self.output_dim = hidden[-1] if hidden else input_dim

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layers.

        Args:
            x: [B, I].

        Returns:
            [B, H] with H = ``output_dim``.
        """
        return self.layers(x)

    def last_layer_parameters(self) -> list[nn.Parameter]:
        """Parameters of the last Linear layer (empty when there is none)."""
        linears = [m for m in self.layers if isinstance(m, nn.Linear)]
        return list(linears[-1].parameters()) if linears else []

    def split_first(self) -> tuple[nn.Linear, nn.Sequential, nn.Sequential]:
        """The first hidden layer's Linear, its ReLU and Dropout (no parameters), and the layers
        after them (empty with one hidden layer): ``self(x) == rest(activation(linear(x)))``."""
        return self.layers[0], self.layers[1:3], self.layers[3:]


class Tower(nn.Module):
    """A task head: MLP, then one output unit (a logit, or a regression value).

    Args:
        input_dim: I.
        hidden: hidden sizes before the output unit (may be empty).
        dropout: dropout probability after each hidden layer.
    """

    def __init__(self, input_dim: int, hidden: Sequence[int], dropout: float) -> None:
        super().__init__()
        self.mlp = MLP(input_dim, hidden, dropout)
        self.head = nn.Linear(self.mlp.output_dim, 1)
        self.output_dim = 1

    def forward(self, x: Tensor) -> Tensor:
        """Compute the output unit.

        Args:
            x: [B, I].

        Returns:
            [B] logits.
        """
        return self.head(self.mlp(x)).squeeze(-1)  # [B, H] -> [B, 1] -> [B]


class InformationTransfer(nn.Module):
    """AITM's Adaptive Information Transfer (Xi et al., KDD 2021).

    The previous task's representation is transferred through a small layer, then an
    attention over {transferred, current} decides how much of it the current task uses.

    Args:
        dim: H, the size of both representations.
        dropout: dropout probability after the transfer layer.
    """

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.transfer = MLP(dim, [dim], dropout)
        self.query = nn.Linear(dim, dim, bias=False)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.scale = dim ** -0.5
        self.output_dim = dim

    def forward(self, previous: Tensor, current: Tensor) -> Tensor:
        """Attend over the transferred previous representation and the current one.

        Args:
            previous: [B, H], the previous task's representation after its own transfer.
            current: [B, H], this task's tower representation.

        Returns:
            [B, H], the attention-weighted sum of the two.
        """
        candidates = torch.stack([self.transfer(previous), current], dim=1)  # [B, 2, H]
        scores = (self.query(candidates) * self.key(candidates)).sum(-1) * self.scale  # [B, 2]
        weights = torch.softmax(scores, dim=1)  # [B, 2]
        return (weights.unsqueeze(-1) * self.value(candidates)).sum(dim=1)  # [B, 2, H] -> [B, H]


class SharedInput(nn.Module):
    """The input of every network: field embeddings, numeric features and their interaction.

    Args:
        cardinalities: vocabulary size of each categorical feature, including id 0.
        embedding_dim: D.
        num_numeric: N (may be 0).
        interaction: append the pairwise (FM) interaction of the field embeddings.
    """

    def __init__(self, cardinalities: Sequence[int], embedding_dim: int, num_numeric: int, interaction: bool) -> None:
        super().__init__()
        self.embedding = FusedEmbedding(cardinalities, embedding_dim)
        self.interaction = PairwiseInteraction(embedding_dim) if interaction else None
        self.output_dim = (
            self.embedding.output_dim + num_numeric + (self.interaction.output_dim if self.interaction else 0))

    def forward(self, cat: Tensor, num: Tensor) -> Tensor:
        """Build the network input.

        Args:
            cat: [B, F] long categorical ids.
            num: [B, N] float standardized numeric features.

        Returns:
            [B, F * D + N (+ D with the interaction)].
        """
        embeddings = self.embedding(cat)  # [B, F, D]
        parts = [embeddings.flatten(1), num]  # [B, F * D], [B, N]
        if self.interaction is not None:
            parts.append(self.interaction(embeddings))  # [B, D]
        return torch.cat(parts, dim=1)
