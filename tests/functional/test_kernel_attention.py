import pytest
import torch

from pyg_attn.functional import sparse
from pyg_attn.functional.kernel_attention import (_GraphKernelAttention,
                                                  _segment_kernel_attention,
                                                  graph_kernel_attention)


def _naive(phi_q, phi_k, value, batch, num_graphs):
    kv = torch.zeros(num_graphs, *phi_k.shape[1:], value.size(-1),
                     dtype=value.dtype).index_add(
                         0, batch, phi_k.unsqueeze(-1) * value.unsqueeze(-2))
    return torch.matmul(phi_q.unsqueeze(-2), kv[batch]).squeeze(-2)


# the eager path (one matmul pair per graph) and the traced path (chunks of
# nodes, custom backward) at several chunk sizes
PATHS = {'segments': (_segment_kernel_attention, 1 << 24),
         'chunks1': (_GraphKernelAttention.apply, 1),
         'chunks13': (_GraphKernelAttention.apply, 13),
         'one_chunk': (_GraphKernelAttention.apply, 1 << 24)}


@pytest.mark.parametrize('path', PATHS)
def test_matches_naive_in_outputs_and_gradients(monkeypatch, path):
    attend, chunk = PATHS[path]
    monkeypatch.setattr(sparse, 'CHUNK_ELEMENTS', chunk)
    batch = torch.tensor([0, 0, 1, 3, 3, 3])  # graph 2 is empty
    inputs = [torch.rand(6, 2, 3, dtype=torch.float64, requires_grad=True),
              torch.rand(6, 2, 3, dtype=torch.float64, requires_grad=True),
              torch.randn(6, 2, 2, dtype=torch.float64, requires_grad=True)]
    out = attend(*inputs, batch, 4)
    torch.testing.assert_close(out, _naive(*inputs, batch, 4))
    assert torch.autograd.gradcheck(
        lambda q, k, v: attend(q, k, v, batch, 4), inputs,
        fast_mode=True)


def test_eager_call_takes_the_segment_path(monkeypatch):
    def chunked(*args):
        raise AssertionError('the chunked path ran in eager mode')

    monkeypatch.setattr(_GraphKernelAttention, 'apply', chunked)
    batch = torch.tensor([0, 0, 1])
    phi = torch.rand(3, 1, 2)
    value = torch.randn(3, 1, 4)
    torch.testing.assert_close(graph_kernel_attention(phi, phi, value, batch, 2),
                               _naive(phi, phi, value, batch, 2))
