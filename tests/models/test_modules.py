import itertools

import torch
from torch import nn

from pipeline.models.experts import Experts, ExtractionLayer, Gate, joint_linear, mix, mix_per_task
from pipeline.models.modules import MLP, Dropout, FusedEmbedding, PairwiseInteraction, SharedInput, Tower
from tests.models.conftest import CARDINALITIES


def test_fused_embedding_uses_one_table_with_per_feature_offsets():
    torch.manual_seed(0)
    embedding = FusedEmbedding(CARDINALITIES, dim=4)
    assert embedding.offsets.tolist() == [0, 10, 30, 37, 42]
    assert "offsets" in dict(embedding.named_buffers())
    tables = [m for m in embedding.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))]
    assert len(tables) == 1 and tables[0].weight.shape == (sum(CARDINALITIES), 4)

    ids = torch.tensor([[0, 0, 0, 0, 0], [9, 19, 6, 4, 2], [3, 5, 1, 2, 1]])
    out = embedding(ids)
    assert out.shape == (3, 5, 4) and embedding.output_dim == 20
    for row, feature in itertools.product(range(3), range(5)):
        expected = tables[0].weight[embedding.offsets[feature] + ids[row, feature]]
        assert torch.equal(out[row, feature], expected)


def test_pairwise_interaction_is_the_sum_over_field_pairs():
    torch.manual_seed(0)
    embeddings = torch.randn(6, 5, 3)
    expected = sum(embeddings[:, i] * embeddings[:, j] for i, j in itertools.combinations(range(5), 2))
    assert torch.allclose(PairwiseInteraction(3)(embeddings), expected, atol=1e-5)


def test_blocks_report_their_output_dim():
    torch.manual_seed(0)
    x = torch.randn(4, 12)
    assert MLP(12, [8, 6], 0.1)(x).shape == (4, MLP(12, [8, 6], 0.1).output_dim) == (4, 6)
    assert MLP(12, [], 0.1).output_dim == 12
    experts = Experts(3, 12, [8, 5], 0.0)
    assert experts(x).shape == (4, 3, 5) and experts.output_dim == 5
    gate = Gate(12, 3)(x)
    assert gate.shape == (4, 3) and torch.allclose(gate.sum(-1), torch.ones(4))
    assert Tower(12, [8], 0.0)(x).shape == (4,)


def test_experts_and_gates_computed_together_equal_each_on_its_own():
    torch.manual_seed(0)
    x = torch.randn(6, 12)
    for hidden in ([8], [8, 5]):  # one hidden layer (side by side), more (the rest per expert)
        experts = Experts(3, 12, hidden, 0.0)
        each = torch.stack([expert(x) for expert in experts.experts], dim=1)  # [B, E, H]
        assert torch.allclose(experts(x), each, atol=1e-6)
    linears = [nn.Linear(12, 3), nn.Linear(12, 4)]
    assert torch.allclose(joint_linear(linears, x), torch.cat([linear(x) for linear in linears], dim=1), atol=1e-6)
    gates = torch.softmax(torch.randn(6, 2, 3), dim=-1)  # [B, T, E]
    outputs = experts(x)
    mixed = mix_per_task(gates, outputs)
    assert mixed.shape == (6, 2, 5)
    for task in range(2):
        assert torch.allclose(mixed[:, task], mix(gates[:, task], outputs), atol=1e-6)


def test_shared_input_concatenates_embeddings_numerics_and_interaction():
    torch.manual_seed(0)
    cat = torch.zeros(4, len(CARDINALITIES), dtype=torch.long)
    with_fm = SharedInput(CARDINALITIES, 8, num_numeric=2, interaction=True)
    without_fm = SharedInput(CARDINALITIES, 8, num_numeric=0, interaction=False)
    assert with_fm(cat, torch.randn(4, 2)).shape == (4, with_fm.output_dim) == (4, 5 * 8 + 2 + 8)
    assert without_fm(cat, torch.empty(4, 0)).shape == (4, without_fm.output_dim) == (4, 5 * 8)


def test_extraction_layer_outputs_per_task_and_shared_until_the_last():
    torch.manual_seed(0)
    x = torch.randn(4, 12)
    middle = ExtractionLayer(3, 12, num_shared_experts=2, num_task_experts=1, hidden=[6], dropout=0.0, is_last=False)
    last = ExtractionLayer(3, 6, num_shared_experts=2, num_task_experts=1, hidden=[5], dropout=0.0, is_last=True)
    tasks, shared = middle([x, x, x], x)
    assert [t.shape for t in tasks] == [(4, 6)] * 3 and shared.shape == (4, 6)
    assert middle.shared_gate.output_dim == 3 * 1 + 2 and middle.task_gates[0].output_dim == 1 + 2
    tasks, shared = last(tasks, shared)
    assert [t.shape for t in tasks] == [(4, 5)] * 3 and shared is None and last.shared_gate is None


def test_dropout_zeroes_a_share_p_of_entries_and_scales_the_rest():
    torch.manual_seed(0)
    drop = Dropout(0.1)
    x = torch.ones(512, 256)

    out = drop(x)
    again = (torch.manual_seed(0), drop(x))[1]

    kept = out != 0
    assert abs(1 - kept.float().mean().item() - 0.1) < 0.005
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / 0.9), rtol=1e-4)
    assert abs(out.mean().item() - 1) < 0.01  # the expectation is kept, as nn.Dropout's
    assert torch.equal(out, again)  # torch's generator: the seed fixes the masks
    assert torch.equal(drop.eval()(x), x) and torch.equal(Dropout(0.0).train()(x), x)
