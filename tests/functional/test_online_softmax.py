import pytest
import torch
import torch.nn.functional as F

from pyg_attn.functional import sparse
from pyg_attn.functional.online_softmax import (EDGES, attention_weights,
                                                logsumexp_by_destination,
                                                online_softmax_attention)
from pyg_attn.testing import reference_attention, reference_softmax


def _additive_problem(num_nodes=9, num_edges=70, heads=2, channels=3):
    """A GAT-style additive score: the engine is generic over the score."""
    h = torch.randn(num_nodes, heads, channels, dtype=torch.float64,
                    requires_grad=True)
    att = torch.randn(heads, channels, dtype=torch.float64,
                      requires_grad=True)
    src = torch.randint(0, num_nodes, (num_edges,))
    dst = torch.randint(0, num_nodes - 2, (num_edges,))  # 2 nodes get none

    def score_fn(t, start, end):
        return F.leaky_relu(((t[0][src[start:end]] + t[0][dst[start:end]]) *
                             t[1]).sum(-1) * 3.0)

    def message_fn(t, start, end):
        return t[0][src[start:end]] * 2.0

    return score_fn, message_fn, (h, att), src, dst, num_nodes


@pytest.mark.parametrize('chunk_size', [1, 4, 1000])
def test_matches_loop_reference(chunk_size):
    score_fn, message_fn, tensors, src, dst, n = _additive_problem()
    out, lse = online_softmax_attention(score_fn, message_fn, tensors, dst, n,
                                        chunk_size)
    score = score_fn(tensors, 0, len(dst))
    expected = reference_attention(score, message_fn(tensors, 0, len(dst)),
                                   dst, n)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(lse, logsumexp_by_destination(score, dst, n))
    assert torch.isinf(lse[-2:]).all() and (out[-2:] == 0).all()
    alpha = attention_weights(score_fn, tensors, lse, dst, chunk_size)
    torch.testing.assert_close(alpha, reference_softmax(score, dst, n))


@pytest.mark.parametrize('chunk_size', [1, 5, 1000])
def test_gradients(chunk_size):
    score_fn, message_fn, tensors, _, dst, n = _additive_problem(7, 30)

    def fn(*t):
        return online_softmax_attention(score_fn, message_fn, t, dst, n,
                                        chunk_size)[0]

    assert torch.autograd.gradcheck(fn, tensors)


def _gathered_problem(num_nodes=9, num_edges=70, heads=2, channels=3):
    """The additive problem with its tensors passed by ``gather``: node rows
    by source and destination, an edge weight by edge, ``att`` whole."""
    score_fn, message_fn, (h, att), src, dst, n = _additive_problem(
        num_nodes, num_edges, heads, channels)
    w = torch.rand(num_edges, heads, dtype=torch.float64, requires_grad=True)
    gather = [src, dst, None, EDGES]

    def gathered_score(t, start, end):
        assert t[0].shape[0] == t[1].shape[0] == t[3].shape[0] == end - start
        return F.leaky_relu(((t[0] + t[1]) * t[2]).sum(-1) * 3.0) * t[3]

    def gathered_message(t, start, end):
        return t[0] * 2.0 * t[3].unsqueeze(-1)

    def reference(h, att, w):
        views = (h[src], h[dst], att, w)
        return (gathered_score(views, 0, len(dst)),
                gathered_message(views, 0, len(dst)))

    return gathered_score, gathered_message, gather, reference, (h, att, w), \
        dst, n


# fewer rows than nodes (chunk leaves); both (9 edges per chunk, 7 in the
# last: 9 nodes); more (whole leaves)
@pytest.mark.parametrize('chunk_size', [1, 4, 9, 1000])
def test_gathered_rows_match_loop_reference(chunk_size):
    score_fn, message_fn, gather, reference, (h, att, w), dst, n = \
        _gathered_problem()
    tensors = (h, h, att, w)
    out, lse = online_softmax_attention(score_fn, message_fn, tensors, dst, n,
                                        chunk_size, gather=gather)
    score, message = reference(h, att, w)
    torch.testing.assert_close(out, reference_attention(score, message, dst,
                                                        n))
    torch.testing.assert_close(lse, logsumexp_by_destination(score, dst, n))
    alpha = attention_weights(score_fn, tensors, lse, dst, chunk_size, gather)
    torch.testing.assert_close(alpha, reference_softmax(score, dst, n))
    grad = torch.randn_like(out)
    ours = torch.autograd.grad(out, (h, att, w), grad)
    expected = torch.autograd.grad(
        reference_attention(score, message, dst, n), (h, att, w), grad)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b)


def test_default_chunk_fits_the_largest_view(monkeypatch):
    # views of a chunk: h by source and destination [c, 2, 3], w by edge
    # [c, 2], att whole (not counted): 6 values per edge, 4 edges in 24
    monkeypatch.setattr(sparse, 'CHUNK_ELEMENTS', 24)
    score_fn, message_fn, gather, reference, (h, att, w), dst, n = \
        _gathered_problem()
    sizes = []

    def counted(t, start, end):
        sizes.append(end - start)
        return score_fn(t, start, end)

    tensors = (h, h, att, w)
    out, lse = online_softmax_attention(counted, message_fn, tensors, dst, n,
                                        gather=gather)
    assert sizes == [4] * 17 + [2]
    torch.testing.assert_close(out, reference_attention(*reference(h, att, w),
                                                        dst, n))
    sizes.clear()
    attention_weights(counted, tensors, lse, dst, gather=gather)
    assert sizes == [4] * 17 + [2]


@pytest.mark.parametrize('chunk_size', [0, -1, 2.5])
def test_bad_chunk_size(chunk_size):
    score_fn, message_fn, tensors, _, dst, n = _additive_problem()
    with pytest.raises(ValueError, match=r"'chunk_size' \(.*\) must be an"):
        online_softmax_attention(score_fn, message_fn, tensors, dst, n,
                                 chunk_size)
    with pytest.raises(ValueError, match=r"'chunk_size' \(.*\) must be an"):
        attention_weights(score_fn, tensors, torch.zeros(n, 2), dst,
                          chunk_size)


@pytest.mark.parametrize('chunk_size', [1, 5, 1000])
def test_gathered_rows_gradients(chunk_size):
    score_fn, message_fn, gather, _, tensors, dst, n = _gathered_problem(7,
                                                                         30)

    def fn(h, att, w):
        return online_softmax_attention(score_fn, message_fn, (h, h, att, w),
                                        dst, n, chunk_size, gather=gather)[0]

    assert torch.autograd.gradcheck(fn, tensors)


def test_large_logits_rescale_without_overflow():
    # later chunks raise the running max by 1e4: rescaling must not overflow
    score = torch.tensor([[0.0], [1e4], [-1e4], [2e4]], requires_grad=True)
    value = torch.tensor([[[1.0]], [[2.0]], [[3.0]], [[4.0]]])
    dst = torch.zeros(4, dtype=torch.long)
    out, lse = online_softmax_attention(
        lambda t, s, e: t[0][s:e], lambda t, s, e: t[1][s:e], (score, value),
        dst, 1, chunk_size=1)
    torch.testing.assert_close(out, torch.tensor([[[4.0]]]))
    torch.testing.assert_close(lse, torch.tensor([[2e4]]))
    out.sum().backward()
    assert torch.isfinite(score.grad).all()


def test_no_edges():
    h = torch.randn(3, 2, 4, requires_grad=True)
    empty = torch.empty(0, dtype=torch.long)
    out, lse = online_softmax_attention(
        lambda t, s, e: (t[0][empty[s:e]] ** 2).sum(-1),
        lambda t, s, e: t[0][empty[s:e]], (h, ), empty, 3)
    assert out.shape == (3, 2, 4) and (out == 0).all() and torch.isinf(lse).all()


def test_bad_gather():
    score_fn, message_fn, tensors, src, dst, n = _additive_problem()
    with pytest.raises(ValueError, match="'gather' has 1 entries for 2"):
        online_softmax_attention(score_fn, message_fn, tensors, dst, n,
                                 gather=[src])
    with pytest.raises(ValueError, match=r"'gather\[1\]' \('rows'\) must"):
        online_softmax_attention(score_fn, message_fn, tensors, dst, n,
                                 gather=[src, 'rows'])
