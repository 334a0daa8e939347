import pytest
import torch

from pyg_attn.functional import (orthogonal_random_matrix,
                                 relu_kernel_features,
                                 softmax_kernel_features, sparse)
from pyg_attn.functional.kernel_attention import (_GraphKernelAttention,
                                                  _segment_kernel_attention,
                                                  fused_kernel_attention,
                                                  graph_kernel_attention)
from pyg_attn.nn.conv.linear_attention_conv import _kernel_attention


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


def _composed(query, key, value, w, kernel, keep):
    """The fused function's reference: whole-tensor features, then the
    layer's normalised attention."""
    if kernel == 'relu':
        phi_q, phi_k = relu_kernel_features(query, w), \
            relu_kernel_features(key, w)
    else:
        phi_q = softmax_kernel_features(query, w, is_query=True)
        phi_k = softmax_kernel_features(key, w, is_query=False)
    phi_kv = phi_k if keep is None else phi_k * keep.unsqueeze(-1)
    return _kernel_attention(phi_q, phi_k, phi_kv, value, None, 1)[0]


@pytest.mark.parametrize('kernel', ['softmax', 'relu'])
@pytest.mark.parametrize('dropout', [False, True])
@pytest.mark.parametrize('chunk_rows', [1, 7, None])
def test_fused_matches_composed_features(kernel, dropout, chunk_rows):
    gen = torch.Generator().manual_seed(0)
    N, H, C, m = 23, 2, 5, 9
    inputs = [torch.randn(N, H, C, generator=gen, dtype=torch.float64,
                          requires_grad=True) for _ in range(3)]
    w = torch.stack([orthogonal_random_matrix(m, C, gen, torch.float64)
                     for _ in range(H)])
    keep = (torch.rand(N, H, generator=gen, dtype=torch.float64) > 0.4) \
        * 2.0 if dropout else None

    def fused(q, k, v):
        return fused_kernel_attention(q, k, v, w, kernel, keep, chunk_rows)

    out = fused(*inputs)
    expected = _composed(*inputs, w, kernel, keep)
    torch.testing.assert_close(out, expected)
    grad = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    for a, b in zip(torch.autograd.grad(out, inputs, grad),
                    torch.autograd.grad(expected, inputs, grad)):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(fused, inputs, fast_mode=True)


def test_fused_large_logits_and_low_precision():
    # keys far apart in norm: the stabiliser keeps every feature finite
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(50, 1, 4, generator=gen) * 6 for _ in range(3))
    w = orthogonal_random_matrix(16, 4, gen).unsqueeze(0)
    out = fused_kernel_attention(q, k, v, w, chunk_rows=8)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, _composed(q, k, v, w, 'softmax', None))
    half = fused_kernel_attention(q.half(), k.half(), v.half(), w.half())
    assert half.dtype == torch.float32  # statistics dtype
    torch.testing.assert_close(
        half, _composed(q.half(), k.half(), v.half(), w.half(), 'softmax',
                        None), rtol=1e-3, atol=1e-3)


def test_fused_empty():
    x = torch.randn(0, 2, 4, requires_grad=True)
    w = orthogonal_random_matrix(8, 4).expand(2, 8, 4)
    out = fused_kernel_attention(x, x, x, w)
    assert out.shape == (0, 2, 4)
    out.sum().backward()
    assert x.grad.shape == x.shape
