r"""Random feature maps for kernelised (linear) attention, from `"Rethinking
Attention with Performers" <https://arxiv.org/abs/2009.14794>`_ (FAVOR+).

A feature map :math:`\phi : \mathbb{R}^C \to \mathbb{R}^m_{>0}` turns the
softmax kernel into a dot product,

.. math::
    \exp(\mathbf{q}^\top \mathbf{k}) =
    \mathbb{E}_{\mathbf{w}}\big[\phi(\mathbf{q})^\top \phi(\mathbf{k})\big],
    \qquad
    \phi(\mathbf{x}) = \frac{1}{\sqrt{m}} \Big(\exp\big(\mathbf{w}_r^\top
    \mathbf{x} - \tfrac{1}{2}\lVert \mathbf{x} \rVert^2\big)\Big)_{r=1}^{m},
    \quad \mathbf{w}_r \sim \mathcal{N}(\mathbf{0}, \mathbf{I}_C),

so attention :math:`\sum_j \exp(\mathbf{q}_i^\top \mathbf{k}_j) \mathbf{v}_j /
\sum_l \exp(\mathbf{q}_i^\top \mathbf{k}_l)` is approximated in :math:`O(N m C)`
by :math:`\phi(\mathbf{q}_i)^\top \mathbf{S} / \phi(\mathbf{q}_i)^\top
\mathbf{z}` with :math:`\mathbf{S} = \sum_j \phi(\mathbf{k}_j)
\mathbf{v}_j^\top` and :math:`\mathbf{z} = \sum_l \phi(\mathbf{k}_l)`.  The
feature map stays :math:`m`-dimensional: summing it to one number (as the
seed's sketch does) loses the kernel.

Letter legend: N nodes, H heads, m random features, C channels per head,
G graphs in a batch.
"""
import math
from typing import Optional

import torch
from torch import Tensor

from pyg_attn.functional.softmax import stat_dtype


def orthogonal_random_matrix(m: int, d: int,
                             generator: Optional[torch.Generator] = None,
                             dtype: torch.dtype = torch.float32,
                             device: Optional[torch.device] = None) -> Tensor:
    r"""``m`` random projection rows of width ``d``: orthogonal within each
    block of ``d`` rows, each row marginally :math:`\mathcal{N}(\mathbf{0},
    \mathbf{I}_d)`.

    Each block is the :math:`\mathbf{Q}` of a QR decomposition of a Gaussian
    :math:`d \times d` matrix, its signs fixed by :math:`\operatorname{diag}
    \mathbf{R}` so it is Haar-distributed; rows are then rescaled by the norms
    of independent Gaussian vectors (:math:`\chi_d`-distributed), which makes
    each row exactly Gaussian and keeps :func:`softmax_kernel_features`
    unbiased, while orthogonality lowers its variance (Performer's
    ``scaling=0``).

    Args:
        m (int): number of rows (random features), ``>= 1``.
        d (int): width of each row (channels per head), ``>= 1``.
        generator (torch.Generator, optional): source of randomness, on
            ``device``; the global generator if :obj:`None`.
        dtype (torch.dtype, optional): dtype of the result; the draw is made
            in float64. (default: :obj:`torch.float32`)
        device (torch.device, optional): device of the draw and the result.

    Returns:
        ``[m, d]`` tensor.
    """
    if m < 1 or d < 1:
        raise ValueError(f"'m' ({m}) and 'd' ({d}) must both be >= 1")
    num_blocks = -(-m // d)
    gauss = torch.randn(num_blocks, d, d, generator=generator,
                        dtype=torch.float64, device=device)
    q, r = torch.linalg.qr(gauss)  # [B, d, d]
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    rows = q.transpose(-2, -1).reshape(num_blocks * d, d)[:m]  # [m, d]
    norms = torch.randn(m, d, generator=generator, dtype=torch.float64,
                        device=device).norm(dim=-1, keepdim=True)  # [m, 1]
    return (rows * norms).to(dtype)


def _project(x: Tensor, w: Tensor) -> Tensor:
    """``x`` ``[N, H, C]`` (or ``[N, C]``) times ``w`` ``[H, m, C]`` (or
    ``[m, C]``) transposed, in the statistics dtype: ``[N, H, m]``."""
    dtype = stat_dtype(x.dtype)
    if x.dim() == 2:
        return x.to(dtype) @ w.to(dtype).t()  # [N, m]
    return torch.einsum('nhc,hmc->nhm', x.to(dtype), w.to(dtype))


def softmax_kernel_features(x: Tensor, w: Tensor, is_query: bool,
                            batch: Optional[Tensor] = None,
                            num_graphs: Optional[int] = None,
                            stabilize: bool = True) -> Tensor:
    r"""Positive random features of the softmax kernel (FAVOR+),

    .. math::
        \phi(\mathbf{x})_r = \frac{1}{\sqrt{m}} \exp\big(\mathbf{w}_r^\top
        \mathbf{x} - \tfrac{1}{2} \lVert \mathbf{x} \rVert^2 - s\big),
        \qquad \mathbb{E}\big[\phi(\mathbf{q})^\top \phi(\mathbf{k})\big]
        = \exp(\mathbf{q}^\top \mathbf{k} - s_q - s_k),

    with a max-stabiliser :math:`s` that keeps the exponent :math:`\le 0`
    (no overflow, and the largest feature is exactly :math:`1/\sqrt{m}`):

    * queries (``is_query=True``): :math:`s` is each row's own maximum over
      the :math:`m` exponents, a per-query constant that cancels in the
      normalised ratio :math:`\phi(\mathbf{q}_i)^\top \mathbf{S} /
      \phi(\mathbf{q}_i)^\top \mathbf{z}`;
    * keys (``is_query=False``): :math:`s` is the maximum over all exponents
      of all keys *of the same graph* (a scatter max over ``batch``), per
      head, a per-graph constant that cancels in the same ratio.  A max over
      every key of a batch would cancel too, but in floating point it lets
      one graph's large keys underflow another graph's features to zero:
      taking it per graph keeps a graph's features identical in a batch and
      alone.

    The stabiliser is detached (it cancels in the normalised ratio, so the
    gradient of the attention output is unchanged).  With ``stabilize=False``
    there is no shift and the features estimate
    :math:`\exp(\mathbf{q}^\top \mathbf{k})` without bias.  Computed in
    float32 for float16/bfloat16 input.

    Args:
        x (Tensor): queries or keys ``[N, H, C]`` (or ``[N, C]``), already
            scaled (for attention logits :math:`\mathbf{q}^\top \mathbf{k} /
            \sqrt{C}`, pass :math:`C^{-1/4}` times each).
        w (Tensor): random projections ``[H, m, C]`` (or ``[m, C]``), e.g.
            from :func:`orthogonal_random_matrix`.
        is_query (bool): stabilise per row (queries) or per graph (keys).
        batch (LongTensor, optional): graph of each node ``[N]``; one graph
            if :obj:`None`.  Only used for keys.
        num_graphs (int, optional): number of graphs; ``batch.max() + 1`` if
            :obj:`None` (which reads the data: pass it under
            ``torch.compile``).
        stabilize (bool, optional): subtract the stabiliser.
            (default: :obj:`True`)

    Returns:
        ``[N, H, m]`` (or ``[N, m]``) features, in float32 for
        float16/bfloat16 ``x``, else in ``x``'s dtype.
    """
    half_sq_norm = 0.5 * x.to(stat_dtype(x.dtype)).pow(2).sum(
        -1, keepdim=True)  # [N, H, 1]
    proj = _project(x, w)  # [N, H, m]
    # every per-row term (and 1/sqrt(m) as log sqrt(m)) goes into one
    # [N, H, 1] shift, so the [N, H, m] tensor sees one subtraction and
    # one exp: the layer is bound by these passes over memory
    shift = half_sq_norm + 0.5 * math.log(w.size(-2))  # [N, H, 1]
    if stabilize:
        row_max = proj.detach().amax(dim=-1, keepdim=True) - \
            half_sq_norm.detach()  # [N, H, 1]
        shift = shift + _stabilizer(row_max, is_query, batch, num_graphs)
    return (proj - shift).exp()


def _stabilizer(row_max: Tensor, is_query: bool, batch: Optional[Tensor],
                num_graphs: Optional[int]) -> Tensor:
    """The max the exponents are shifted by, ``[N, H, 1]`` (or ``[1, H,
    1]``), from each row's largest exponent ``row_max`` ``[N, H, 1]``."""
    if is_query:
        return row_max
    if batch is None:
        if row_max.size(0) == 0:
            return row_max
        return row_max.amax(dim=0, keepdim=True)  # [1, H, 1]
    if num_graphs is None:
        num_graphs = int(batch.max()) + 1 if batch.numel() > 0 else 0
    index = batch.view(-1, *([1] * (row_max.dim() - 1))).expand_as(row_max)
    graph_max = row_max.new_full((num_graphs,) + tuple(row_max.shape[1:]),
                                 float('-inf')).scatter_reduce(
                                     0, index, row_max, reduce='amax',
                                     include_self=True)  # [G, H, 1]
    return graph_max.index_select(0, batch)  # [N, H, 1]


RELU_KERNEL_EPS = 1e-3  # the default epsilon of relu_kernel_features


def relu_kernel_features(x: Tensor, w: Tensor,
                         eps: float = RELU_KERNEL_EPS) -> Tensor:
    r"""Random ReLU features (Performer's generalised attention, the kernel
    of PyG's :class:`~torch_geometric.nn.attention.PerformerAttention`),

    .. math::
        \phi(\mathbf{x})_r = \max(0, \mathbf{w}_r^\top \mathbf{x}) +
        \varepsilon,

    a positive feature map whose kernel :math:`\phi(\mathbf{q})^\top
    \phi(\mathbf{k})` is not the softmax kernel.  :math:`\varepsilon` keeps
    every feature, and so every normaliser, positive.  Computed in float32
    for float16/bfloat16 input.

    Args:
        x (Tensor): queries or keys ``[N, H, C]`` (or ``[N, C]``).
        w (Tensor): random projections ``[H, m, C]`` (or ``[m, C]``).
        eps (float, optional): added to each feature. (default: :obj:`1e-3`)

    Returns:
        ``[N, H, m]`` (or ``[N, m]``) features.
    """
    return _project(x, w).relu() + eps
