"""Reusable property checks, small labelled graphs and slow references."""
from pyg_attn.testing.checks import (TOLERANCES, assert_alpha_sums_to_one,
                                     assert_batch_independent,
                                     assert_bipartite, assert_close,
                                     assert_compile_matches_eager,
                                     assert_edge_permutation_invariant,
                                     assert_finite_gradients,
                                     assert_local_attention_properties,
                                     assert_neighbor_batch,
                                     assert_node_permutation_equivariant,
                                     assert_output_shape,
                                     assert_reset_parameters,
                                     assert_same_function, layer_inputs,
                                     run)
from pyg_attn.testing.graphs import (EDGE_DIM, NUM_FEATURES, bipartite_graph,
                                     edge_set, make_graph,
                                     random_graph, small_graphs)
from pyg_attn.testing.hnsw_search import hnsw_search
from pyg_attn.testing.reference import (reference_attention,
                                        reference_dot_product_attention,
                                        reference_local_global_attention,
                                        reference_rotary_attention,
                                        reference_rotation,
                                        reference_softmax)

__all__ = [
    'hnsw_search',
    'EDGE_DIM', 'NUM_FEATURES', 'TOLERANCES', 'assert_alpha_sums_to_one', 'assert_batch_independent',
    'assert_bipartite', 'assert_close', 'assert_compile_matches_eager',
    'assert_edge_permutation_invariant', 'assert_finite_gradients', 'assert_local_attention_properties',
    'assert_neighbor_batch',
    'assert_node_permutation_equivariant', 'assert_output_shape',
    'assert_reset_parameters', 'assert_same_function', 'layer_inputs', 'run', 'bipartite_graph',
    'edge_set', 'make_graph', 'random_graph', 'small_graphs', 'reference_attention',
    'reference_dot_product_attention', 'reference_softmax',
    'reference_local_global_attention', 'reference_rotary_attention',
    'reference_rotation'
]
