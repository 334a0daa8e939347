import pytest
import torch

from pyg_attn.functional import gather_dot, gather_scatter, sparse

CASES = [(5, 7, 19, 1, 4), (11, 3, 41, 3, 5), (2, 9, 1, 2, 3)]
IDS = [f'Na{a}-Nb{b}-E{e}-H{h}-C{c}' for a, b, e, h, c in CASES]


def _inputs(num_a, num_b, num_edges, heads, channels, dtype=torch.float64):
    a = torch.randn(num_a, heads, channels, dtype=dtype, requires_grad=True)
    b = torch.randn(num_b, heads, channels, dtype=dtype, requires_grad=True)
    index_a = torch.randint(0, num_a, (num_edges,))
    index_b = torch.randint(0, num_b, (num_edges,))
    return a, b, index_a, index_b


@pytest.mark.parametrize('case', CASES, ids=IDS)
def test_gather_dot_matches_naive(case):
    a, b, ia, ib = _inputs(*case)
    out = gather_dot(a, b, ia, ib)
    naive = (a[ia] * b[ib]).sum(-1)
    torch.testing.assert_close(out, naive)
    grad = torch.randn_like(out)
    expected = torch.autograd.grad(naive, (a, b), grad)
    torch.testing.assert_close(torch.autograd.grad(out, (a, b), grad),
                               expected)
    assert torch.autograd.gradcheck(lambda a, b: gather_dot(a, b, ia, ib),
                                    (a, b))


@pytest.mark.parametrize('case', CASES, ids=IDS)
def test_gather_scatter_matches_naive(case):
    num_a, num_b, num_edges, heads, _ = case
    _, v, index_out, index_v = _inputs(*case)
    w = torch.randn(num_edges, heads, dtype=torch.float64, requires_grad=True)
    out = gather_scatter(w, v, index_v, index_out, num_a)
    naive = torch.zeros(num_a, *v.shape[1:], dtype=v.dtype).index_add(
        0, index_out, w.unsqueeze(-1) * v[index_v])
    torch.testing.assert_close(out, naive)
    assert torch.autograd.gradcheck(
        lambda w, v: gather_scatter(w, v, index_v, index_out, num_a), (w, v))


def test_edge_aligned_and_broadcast_heads():
    a = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
    e = torch.randn(9, 1, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(9, 3, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 4, (9,))
    torch.testing.assert_close(gather_dot(a, e, index, None),
                               (a[index] * e).sum(-1))
    assert torch.autograd.gradcheck(lambda a, e: gather_dot(a, e, index, None),
                                    (a, e))
    assert torch.autograd.gradcheck(
        lambda w, e: gather_scatter(w, e, None, index, 4), (w, e))


@pytest.mark.parametrize('chunk', [1, 7, 1 << 24])
def test_chunking_gives_the_same_result(monkeypatch, chunk):
    a, b, ia, ib = _inputs(9, 13, 57, 2, 3)
    w = torch.randn(57, 2, dtype=torch.float64, requires_grad=True)
    expected = [gather_dot(a, b, ia, ib), gather_scatter(w, b, ib, ia, 9)]
    grads = torch.autograd.grad(expected, (a, b, w), [torch.ones(57, 2),
                                                      torch.ones(9, 2, 3)])
    monkeypatch.setattr(sparse, 'CHUNK_ELEMENTS', chunk)
    out = [gather_dot(a, b, ia, ib), gather_scatter(w, b, ib, ia, 9)]
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(
        torch.autograd.grad(out, (a, b, w), [torch.ones(57, 2),
                                             torch.ones(9, 2, 3)]), grads)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_values_accumulate_in_float32(dtype):
    num_edges = 50_000
    v = torch.randn(10, 1, 4).to(dtype)
    w = torch.full((num_edges, 1), 1.0 / num_edges)  # float32 weights
    index_v = torch.randint(0, 10, (num_edges,))
    out = gather_scatter(w, v, index_v, torch.zeros_like(index_v), 1)
    assert out.dtype == dtype
    expected = (w.double().unsqueeze(-1) * v.double()[index_v]).sum(0)
    torch.testing.assert_close(out[0].double(), expected,
                               rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize('edge_aligned', [True, False])
def test_no_edges_give_zero_gradients(edge_aligned):
    w = torch.zeros(0, 2, requires_grad=True)
    v = torch.zeros(0 if edge_aligned else 3, 2, 5, requires_grad=True)
    index_v = None if edge_aligned else torch.zeros(0, dtype=torch.long)
    out = gather_scatter(w, v, index_v, torch.zeros(0, dtype=torch.long), 4)
    out.sum().backward()
    assert out.shape == (4, 2, 5) and not out.any()
    assert w.grad.shape == w.shape
    assert v.grad.shape == v.shape and not v.grad.any()
