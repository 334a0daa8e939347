import pytest
import torch

from pyg_attn.functional import sparse
from pyg_attn.functional.online_softmax import EDGES
from pyg_attn.functional.recompute import edge_map, recomputed


def _problem(num_nodes=9, num_edges=70, heads=2, channels=3,
             dtype=torch.float64):
    """A per-edge function of node rows by source and destination, an edge
    tensor and a whole weight, with its plain-autograd reference."""
    gen = torch.Generator().manual_seed(0)
    src, dst = torch.randint(0, num_nodes, (2, num_edges), generator=gen)
    h = torch.randn(num_nodes, heads, channels, generator=gen, dtype=dtype)
    e = torch.randn(num_edges, heads, generator=gen, dtype=dtype)
    w = torch.randn(channels, channels, generator=gen, dtype=dtype)
    tensors = [t.requires_grad_() for t in (h, e, w)]
    gather = [src, EDGES, None, dst]

    def fn(t, start, end):
        # t[0] source rows, t[1] edge rows, t[2] the weight, t[3] destination
        # rows (of the same tensor h)
        assert t[0].size(0) == t[1].size(0) == t[3].size(0) == end - start
        return torch.tanh(t[0] @ t[2]) * t[1].unsqueeze(-1) + t[3] ** 2

    def reference(h, e, w):
        return fn((h[src], e, w, h[dst]), 0, num_edges)

    return fn, gather, tensors, reference, src, dst


# fewer rows than nodes (chunk leaves); both; more (whole leaves)
@pytest.mark.parametrize('chunk_size', [1, 4, 9, 1000])
@pytest.mark.parametrize('summed', [False, True], ids=['rows', 'sums'])
def test_matches_plain_autograd(chunk_size, summed):
    fn, gather, (h, e, w), reference, src, dst = _problem()
    tensors = [h, e, w, h]
    kwargs = dict(dst=dst, num_dst=9) if summed else {}
    out = edge_map(fn, tensors, 70, gather, chunk_size=chunk_size, **kwargs)
    expected = reference(h, e, w)
    if summed:
        expected = expected.new_zeros(9, 2, 3).index_add(0, dst, expected)
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(out)
    ours = torch.autograd.grad(out, (h, e, w), grad)
    theirs = torch.autograd.grad(expected, (h, e, w), grad)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize('chunk_size', [1, 5, 1000])
@pytest.mark.parametrize('summed', [False, True], ids=['rows', 'sums'])
def test_gradients(chunk_size, summed):
    fn, gather, tensors, _, src, dst = _problem(7, 30)
    kwargs = dict(dst=dst, num_dst=7) if summed else {}

    def run(h, e, w):
        return edge_map(fn, (h, e, w, h), 30, gather, chunk_size=chunk_size,
                        **kwargs)

    assert torch.autograd.gradcheck(run, tensors)


def test_default_chunk_fits_the_largest_view(monkeypatch):
    # views of a chunk: h by source and destination [c, 2, 3], e by edge
    # [c, 2], w whole (not counted): 6 values per edge, 4 edges in 24
    monkeypatch.setattr(sparse, 'CHUNK_ELEMENTS', 24)
    fn, gather, (h, e, w), reference, src, dst = _problem()
    sizes = []

    def counted(t, start, end):
        sizes.append(end - start)
        return fn(t, start, end)

    out = edge_map(counted, [h, e, w, h], 70, gather)
    assert sizes == [4] * 17 + [2]
    torch.testing.assert_close(out, reference(h, e, w))


def test_half_rows_are_summed_in_float32():
    # one edge per chunk into one destination: 256 then six ones.  A
    # bfloat16 sum stays at 256 (its spacing there is 2); float32 gives 262
    rows = torch.ones(7, 1, dtype=torch.bfloat16)
    rows[0] = 256
    dst = torch.zeros(7, dtype=torch.long)
    out = edge_map(lambda t, s, e: t[0], [rows], 7, [EDGES], dst, 1,
                   chunk_size=1)
    assert out.dtype == torch.bfloat16
    assert out.item() == 262


def test_no_edges():
    h = torch.randn(3, 2, 4, requires_grad=True)
    empty = torch.empty(0, dtype=torch.long)
    rows = edge_map(lambda t, s, e: t[0] * 2, [h], 0, [empty])
    assert rows.shape == (0, 2, 4)
    sums = edge_map(lambda t, s, e: t[0] * 2, [h], 0, [empty], empty, 3)
    assert torch.equal(sums, torch.zeros(3, 2, 4))
    (rows.sum() + sums.sum()).backward()
    assert torch.equal(h.grad, torch.zeros_like(h))


def test_bad_arguments():
    h = torch.randn(3, 2)
    index = torch.tensor([0, 2])
    with pytest.raises(ValueError, match="'gather' has 1 entries"):
        edge_map(lambda t, s, e: t[0], [h, h], 2, [index])
    with pytest.raises(ValueError, match="needs 'num_dst'"):
        edge_map(lambda t, s, e: t[0], [h], 2, [index], dst=index)
    with pytest.raises(ValueError, match="'chunk_size' \\(0\\)"):
        edge_map(lambda t, s, e: t[0], [h], 2, [index], chunk_size=0)


def test_recomputed_matches_plain_autograd():
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)

    def fn(x, w, scale):
        return torch.tanh(x @ w).exp() * scale

    out = recomputed(fn, x, w, 2.0)
    expected = fn(x, w, 2.0)
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, (x, w), grad),
                               torch.autograd.grad(expected, (x, w), grad))
    with torch.no_grad():
        torch.testing.assert_close(recomputed(fn, x, w, 2.0), expected)
