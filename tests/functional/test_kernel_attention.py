import pytest
import torch

from pyg_attn.functional import sparse
from pyg_attn.functional.kernel_attention import graph_kernel_attention


def _naive(phi_q, phi_k, value, batch, num_graphs):
    kv = torch.zeros(num_graphs, *phi_k.shape[1:], value.size(-1),
                     dtype=value.dtype).index_add(
                         0, batch, phi_k.unsqueeze(-1) * value.unsqueeze(-2))
    return torch.matmul(phi_q.unsqueeze(-2), kv[batch]).squeeze(-2)


@pytest.mark.parametrize('chunk', [1, 13, 1 << 24])
def test_matches_naive_in_outputs_and_gradients(monkeypatch, chunk):
    monkeypatch.setattr(sparse, 'CHUNK_ELEMENTS', chunk)
    batch = torch.tensor([0, 0, 1, 3, 3, 3])  # graph 2 is empty
    inputs = [torch.rand(6, 2, 3, dtype=torch.float64, requires_grad=True),
              torch.rand(6, 2, 3, dtype=torch.float64, requires_grad=True),
              torch.randn(6, 2, 2, dtype=torch.float64, requires_grad=True)]
    out = graph_kernel_attention(*inputs, batch, 4)
    torch.testing.assert_close(out, _naive(*inputs, batch, 4))
    assert torch.autograd.gradcheck(
        lambda q, k, v: graph_kernel_attention(q, k, v, batch, 4), inputs,
        fast_mode=True)
