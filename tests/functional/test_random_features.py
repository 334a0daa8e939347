import math

import pytest
import torch

from pyg_attn.functional import (orthogonal_random_matrix,
                                 relu_kernel_features,
                                 softmax_kernel_features)


def _unit(n, d, gen, dtype=torch.float64):
    return torch.nn.functional.normalize(
        torch.randn(n, d, generator=gen, dtype=dtype), dim=-1)


def _attention(phi_q, phi_k, v):
    """Normalised linear attention of one graph, ``[N, m]`` features."""
    return (phi_q @ (phi_k.t() @ v)) / (phi_q @ phi_k.sum(0)).unsqueeze(-1)


@pytest.mark.parametrize('m,d', [(37, 5), (3, 8), (16, 16)],
                         ids=['m37-d5', 'm3-d8', 'm16-d16'])
def test_orthogonal_random_matrix_blocks(m, d):
    gen = torch.Generator().manual_seed(1)
    w = orthogonal_random_matrix(m, d, gen, dtype=torch.float64)
    assert w.shape == (m, d) and w.dtype == torch.float64
    for start in range(0, m, d):
        block = w[start:start + d]
        gram = block @ block.t()
        off = gram - torch.diag(torch.diagonal(gram))
        assert off.abs().max() < 1e-10, 'rows of a block are not orthogonal'
    assert torch.equal(
        w, orthogonal_random_matrix(m, d, torch.Generator().manual_seed(1),
                                    dtype=torch.float64))
    assert orthogonal_random_matrix(m, d).dtype == torch.float32


def test_orthogonal_random_matrix_rows_are_gaussian():
    # each row marginally N(0, I): mean 0, covariance I, E|w|^2 = d
    gen = torch.Generator().manual_seed(0)
    w = torch.cat([orthogonal_random_matrix(4, 4, gen, torch.float64)
                   for _ in range(2000)])  # [8000, 4]
    torch.testing.assert_close(w.mean(0), torch.zeros(4, dtype=w.dtype),
                               atol=0.05, rtol=0)
    torch.testing.assert_close(w.t() @ w / w.size(0),
                               torch.eye(4, dtype=w.dtype), atol=0.08, rtol=0)


def test_orthogonal_random_matrix_bad_size():
    with pytest.raises(ValueError, match=r"'m' \(0\)"):
        orthogonal_random_matrix(0, 4)


@pytest.mark.parametrize('scale', [0.5, 1.0], ids=['norm0.5', 'norm1'])
def test_softmax_features_unbiased(scale):
    """The mean of phi(q).phi(k) over many draws is exp(q.k), within four
    standard errors of the mean."""
    gen = torch.Generator().manual_seed(0)
    d, m, draws = 6, 8, 3000
    q, k = _unit(3, d, gen) * scale, _unit(3, d, gen) * scale
    estimates = torch.stack([
        softmax_kernel_features(q, w, True, stabilize=False)
        @ softmax_kernel_features(k, w, False, stabilize=False).t()
        for w in (orthogonal_random_matrix(m, d, gen, torch.float64)
                  for _ in range(draws))
    ])  # [draws, 3, 3]
    exact = (q @ k.t()).exp()
    err = (estimates.mean(0) - exact).abs()
    stderr = estimates.std(0) / math.sqrt(draws)
    assert (err <= 4 * stderr).all(), (err, stderr)
    assert (err / exact).max() < 0.05


def test_softmax_features_stabilised_ratio_is_unchanged():
    gen = torch.Generator().manual_seed(2)
    q, k = _unit(9, 5, gen) * 1.5, _unit(9, 5, gen) * 1.5
    v = torch.randn(9, 3, generator=gen, dtype=torch.float64)
    w = orthogonal_random_matrix(11, 5, gen, torch.float64)
    plain = _attention(softmax_kernel_features(q, w, True, stabilize=False),
                       softmax_kernel_features(k, w, False, stabilize=False),
                       v)
    phi_q = softmax_kernel_features(q, w, True)
    phi_k = softmax_kernel_features(k, w, False)
    torch.testing.assert_close(_attention(phi_q, phi_k, v), plain)
    # the largest query feature of each row, and the largest key feature, is
    # exactly 1/sqrt(m)
    torch.testing.assert_close(phi_q.amax(-1),
                               torch.full((9,), 11**-0.5, dtype=q.dtype))
    torch.testing.assert_close(phi_k.max(), torch.tensor(11**-0.5,
                                                         dtype=q.dtype))


def test_softmax_features_do_not_overflow_at_large_norm():
    gen = torch.Generator().manual_seed(3)
    q, k = _unit(6, 4, gen, torch.float32) * 40, _unit(6, 4, gen,
                                                        torch.float32) * 40
    w = orthogonal_random_matrix(16, 4, gen)
    raw = softmax_kernel_features(k, w, False, stabilize=False)
    assert (raw == 0).all() or not torch.isfinite(raw).all()  # the problem
    phi_q = softmax_kernel_features(q, w, True)
    phi_k = softmax_kernel_features(k, w, False)
    assert torch.isfinite(phi_q).all() and torch.isfinite(phi_k).all()
    assert (phi_q.amax(-1) > 0).all() and phi_k.max() > 0


def test_key_stabiliser_is_per_graph():
    """A graph's key features in a batch are its features alone, even next
    to a graph whose exponents are far higher; a max over the whole batch
    would underflow the other graph's features to zero."""
    gen = torch.Generator().manual_seed(4)
    small = _unit(5, 4, gen, torch.float32).view(5, 1, 4)
    # exponents w.k - |k|^2/2 near -450 here, near 0 in the first graph
    large = _unit(7, 4, gen, torch.float32).view(7, 1, 4) * 30
    keys = torch.cat([small, large])  # [12, H=1, 4]
    batch = torch.tensor([0] * 5 + [1] * 7)
    w = orthogonal_random_matrix(8, 4, gen).unsqueeze(0)  # [1, 8, 4]
    phi = softmax_kernel_features(keys, w, False, batch=batch, num_graphs=2)
    assert phi.shape == (12, 1, 8)
    assert torch.equal(phi[:5], softmax_kernel_features(small, w, False))
    assert torch.equal(phi[5:], softmax_kernel_features(large, w, False))
    torch.testing.assert_close(
        phi, softmax_kernel_features(keys, w, False, batch=batch))
    whole_batch_max = softmax_kernel_features(keys, w, False)
    assert (whole_batch_max[5:] == 0).all()  # the leak the scatter max avoids
    assert (phi[5:].amax(-1) > 0).all()


def test_query_stabiliser_is_per_row_and_head():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(4, 3, 5, generator=gen)  # [N, H, C]
    w = torch.stack([orthogonal_random_matrix(7, 5, gen) for _ in range(3)])
    phi = softmax_kernel_features(x, w, True)
    assert phi.shape == (4, 3, 7)
    for h in range(3):
        torch.testing.assert_close(phi[:, h],
                                   softmax_kernel_features(x[:, h], w[h],
                                                           True))


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_input_gives_float32_features(dtype):
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(5, 2, 4, generator=gen)
    w = torch.stack([orthogonal_random_matrix(6, 4, gen) for _ in range(2)])
    for fn in (lambda t, u: softmax_kernel_features(t, u, True),
               lambda t, u: softmax_kernel_features(t, u, False),
               relu_kernel_features):
        phi = fn(x.to(dtype), w.to(dtype))
        assert phi.dtype == torch.float32
        torch.testing.assert_close(phi, fn(x, w), rtol=5e-2, atol=5e-3)


def test_relu_features():
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(6, 2, 3, generator=gen)
    w = torch.stack([orthogonal_random_matrix(5, 3, gen) for _ in range(2)])
    phi = relu_kernel_features(x, w)
    assert phi.shape == (6, 2, 5) and (phi >= 1e-3).all()
    expected = torch.einsum('nhc,hmc->nhm', x, w).clamp(min=0) + 1e-3
    torch.testing.assert_close(phi, expected)
    assert relu_kernel_features(x[:, 0], w[0], eps=0.).min() == 0


def test_gradients():
    """Features without the stabiliser have exact gradients; with it (it is
    detached) the normalised attention still has exact gradients, since the
    stabiliser cancels there."""
    gen = torch.Generator().manual_seed(8)
    w = orthogonal_random_matrix(6, 3, gen, torch.float64)
    x = torch.randn(5, 3, generator=gen, dtype=torch.float64,
                    requires_grad=True)
    v = torch.randn(5, 2, generator=gen, dtype=torch.float64)
    for fn in (lambda t: softmax_kernel_features(t, w, True, stabilize=False),
               lambda t: relu_kernel_features(t, w),
               lambda t: _attention(softmax_kernel_features(t, w, True),
                                    softmax_kernel_features(t, w, False), v)):
        assert torch.autograd.gradcheck(fn, (x,))
