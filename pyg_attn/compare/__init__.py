r"""Compare attention mechanisms on one dataset with one protocol: the
:obj:`pyg-attn compare` command (:mod:`pyg_attn.cli`) and the training code
the examples share."""
from pyg_attn.compare.mechanisms import (Hyperparameters, Mechanism,
                                         available_mechanisms)
from pyg_attn.compare.memory import PeakMemory
from pyg_attn.compare.report import format_table, plot, write_csv, write_json
from pyg_attn.compare.runner import (DATASETS, compare, environment,
                                     train_mechanism)
from pyg_attn.compare.training import (FULL, QUICK, Protocol, auxiliary_loss,
                                       count_parameters, run_seed,
                                       train_node_classifier,
                                       with_auxiliary_loss)

__all__ = ['Hyperparameters', 'Mechanism', 'available_mechanisms',
           'PeakMemory', 'format_table', 'plot', 'write_csv', 'write_json',
           'DATASETS', 'compare', 'environment', 'train_mechanism', 'FULL',
           'QUICK', 'Protocol', 'auxiliary_loss', 'count_parameters',
           'run_seed', 'train_node_classifier', 'with_auxiliary_loss']
