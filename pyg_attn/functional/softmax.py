"""Softmax of per-edge logits over each destination's incoming edges."""
import torch
from torch import Tensor


def stat_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype softmax statistics (max, sum) are kept in: float32 for
    float16/bfloat16, the input's own dtype otherwise."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _expand_index(index: Tensor, like: Tensor) -> Tensor:
    return index.view(-1, *([1] * (like.dim() - 1))).expand_as(like)


def edge_softmax(src: Tensor, index: Tensor, num_nodes: int) -> Tensor:
    r"""Softmax of edge logits grouped by destination node.

    .. math::
        \alpha_{e} = \frac{\exp(s_e - m_{i})}{\sum_{e' : \mathrm{dst}(e') = i}
        \exp(s_{e'} - m_{i})}, \qquad i = \mathrm{dst}(e),\;
        m_i = \max_{e' : \mathrm{dst}(e') = i} s_{e'}

    The running statistics :math:`m_i` and the sum are kept in float32 for
    float16/bfloat16 logits, so a destination of in-degree :math:`10^5` keeps
    a relative error of about one unit in the last place of the output dtype
    (a float16 sum of :math:`10^5` terms does not).  Logits of :math:`-\infty`
    mask an edge out (weight 0); a destination whose edges are all masked gets
    weights 0, never NaN.  As in PyG's :func:`~torch_geometric.utils.softmax`,
    the maximum is detached (it cancels in the gradient).

    Args:
        src (Tensor): logits ``[E]`` or ``[E, H]``.
        index (LongTensor): destination of each edge ``[E]``.
        num_nodes (int): number of destination nodes.

    Returns:
        Weights of the shape of ``src``, in :func:`stat_dtype` of its dtype:
        float32 for float16/bfloat16 logits, whose weights at high in-degree
        fall below float16's normal range (:math:`10^5` edges give weights
        near :math:`10^{-5}`).
    """
    dtype = stat_dtype(src.dtype)
    s = src.to(dtype)
    idx = _expand_index(index, s)
    size = (num_nodes,) + tuple(s.shape[1:])
    m = s.new_full(size, float('-inf')).scatter_reduce(
        0, idx, s.detach(), reduce='amax', include_self=True)
    # a destination with every edge masked has max -inf: clamp so -inf - m = -inf
    m = m.clamp(min=torch.finfo(dtype).min)
    e = (s - m.index_select(0, index)).exp()  # [E, H]
    denom = s.new_zeros(size).scatter_add(0, idx, e)  # [N, H]
    return e / (denom.index_select(0, index) + 1e-16)
