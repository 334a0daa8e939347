"""Pure tensor math shared by the layers."""
from pyg_attn.functional.knn import (
    edge_distance,
    knn,
)
from pyg_attn.functional.latent_knn import (
    latent_knn,
)
from pyg_attn.functional.poincare import (
    clip_tangent,
    dist,
    edge_dist,
    expmap,
    expmap0,
    expmap0_add,
    lambda_x,
    logmap,
    logmap0,
    mobius_add,
    mobius_matvec,
    mobius_scalar_mul,
    project,
    scatter_gyromidpoint,
)
from pyg_attn.functional.random_features import (
    orthogonal_random_matrix,
    relu_kernel_features,
    softmax_kernel_features,
)
from pyg_attn.functional.rope import (
    rope_angles,
    rope_frequencies,
    rope_rotate,
)
from pyg_attn.functional.softmax import (
    edge_softmax,
    stat_dtype,
)
from pyg_attn.functional.sparse import (
    gather_dot,
    gather_scatter,
)

__all__ = [
    'edge_distance',
    'knn',
    'latent_knn',
    'clip_tangent',
    'dist',
    'edge_dist',
    'expmap',
    'expmap0',
    'expmap0_add',
    'lambda_x',
    'logmap',
    'logmap0',
    'mobius_add',
    'mobius_matvec',
    'mobius_scalar_mul',
    'project',
    'scatter_gyromidpoint',
    'orthogonal_random_matrix',
    'relu_kernel_features',
    'softmax_kernel_features',
    'rope_angles',
    'rope_frequencies',
    'rope_rotate',
    'edge_softmax',
    'stat_dtype',
    'gather_dot',
    'gather_scatter',
]
