import os.path as osp
from typing import Callable, List, Optional

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset
from torch_geometric.utils import to_undirected

from pyg_attn.datasets.root import data_root

HGCN_DATA_URL = 'https://github.com/HazyResearch/hgcn/tree/master/data'


def read_csr_npz(path: str) -> torch.Tensor:
    r"""Reads a matrix that :func:`scipy.sparse.save_npz` wrote in CSR format
    and returns it dense, without importing scipy (not a dependency).

    Args:
        path (str): The :obj:`.npz` file.

    Raises:
        ValueError: If the file holds another sparse format than CSR.
    """
    with np.load(path) as npz:
        fmt = npz['format'].item()
        fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
        if fmt != 'csr':
            raise ValueError(f"'{path}' holds a scipy '{fmt}' matrix; "
                             f"expected 'csr' (save it with "
                             f"scipy.sparse.save_npz(path, m.tocsr()))")
        num_rows, num_cols = (int(v) for v in npz['shape'])
        indptr, cols, values = npz['indptr'], npz['indices'], npz['data']
    rows = np.repeat(np.arange(num_rows), np.diff(indptr))
    dense = np.zeros((num_rows, num_cols), dtype=values.dtype)
    np.add.at(dense, (rows, cols), values)  # sums duplicates, as scipy does
    return torch.from_numpy(dense)


class DiseaseLP(InMemoryDataset):
    r"""The :obj:`disease_lp` graph from the `"Hyperbolic Graph Convolutional
    Neural Networks" <https://arxiv.org/abs/1910.12933>`_ paper (Chami et al.,
    2019): a simulated SIR disease spread, whose infection tree is the graph
    (δ-hyperbolicity 0), with node features and a binary infected label.

    It is HGCN's link prediction benchmark (85/5/10 edge split, ROC AUC):
    split it with :class:`torch_geometric.transforms.RandomLinkSplit`.
    Features are used as given (HGCN runs it with :obj:`--normalize-feats 0`).

    PyG has no class for it and the files have no download URL of their own,
    so the three raw files (from `HGCN's repository
    <https://github.com/HazyResearch/hgcn/tree/master/data/disease_lp>`_)
    must already be in :obj:`<root>/disease_lp/raw/`:

    - :obj:`disease_lp.edges.csv`: one :obj:`"u,v"` edge per line, node ids
      :obj:`0 … N-1`, each undirected edge once;
    - :obj:`disease_lp.feats.npz`: the :math:`N \times F` features, a scipy
      CSR matrix (read without scipy);
    - :obj:`disease_lp.labels.npy`: the :math:`N` integer labels.

    Args:
        root (str, optional): The data root; see
            :func:`~pyg_attn.datasets.data_root`. PyG writes
            :obj:`<root>/disease_lp/processed/` beside :obj:`raw/`.
            (default: :obj:`None`)
        transform (callable, optional): A transform applied on access.
            (default: :obj:`None`)
        pre_transform (callable, optional): A transform applied before
            saving the processed data. (default: :obj:`None`)
        force_reload (bool, optional): Re-process the raw files.
            (default: :obj:`False`)

    Raises:
        FileNotFoundError: If any raw file is missing; the message lists the
            files and the folder to put them in.
        ValueError: If the edge list names a node without a feature row.

    **STATS:**

    .. list-table::
        :header-rows: 1

        * - #nodes
          - #edges
          - #features
          - #classes
        * - 2,665
          - 5,328
          - 11
          - 2

    Example:
        >>> dataset = DiseaseLP('data')  # doctest: +SKIP
        >>> dataset[0]  # doctest: +SKIP
        Data(x=[2665, 11], edge_index=[2, 5328], y=[2665])
    """

    name = 'disease_lp'

    def __init__(
        self,
        root: Optional[str] = None,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        force_reload: bool = False,
    ) -> None:
        super().__init__(data_root(root), transform, pre_transform,
                         force_reload=force_reload)
        self.load(self.processed_paths[0])

    @property
    def raw_dir(self) -> str:
        return osp.join(self.root, self.name, 'raw')

    @property
    def processed_dir(self) -> str:
        return osp.join(self.root, self.name, 'processed')

    @property
    def raw_file_names(self) -> List[str]:
        return [f'{self.name}.edges.csv', f'{self.name}.feats.npz',
                f'{self.name}.labels.npy']

    @property
    def processed_file_names(self) -> str:
        return 'data.pt'

    def download(self) -> None:
        files = self.raw_file_names
        missing = [f for f in files
                   if not osp.isfile(osp.join(self.raw_dir, f))]
        raise FileNotFoundError(
            f"{self.name}: {len(missing)} of its {len(files)} raw files are "
            f"missing from '{self.raw_dir}/' ({', '.join(missing)}). PyG "
            f"cannot download them: put {', '.join(files)} in "
            f"'{self.raw_dir}/', e.g. by copying the project's raw datasets "
            f"to a writable root: `cp -r ../shared/datasets $PYG_ATTN_DATA "
            f"&& chmod -R u+w $PYG_ATTN_DATA` (they come from "
            f"{HGCN_DATA_URL}/{self.name}).")

    def process(self) -> None:
        edges_path, feats_path, labels_path = self.raw_paths
        edges = np.loadtxt(edges_path, delimiter=',', dtype=np.int64,
                           ndmin=2)
        x = read_csr_npz(feats_path).to(torch.float)
        y = torch.from_numpy(np.load(labels_path)).to(torch.long)
        num_nodes = x.size(0)
        if y.numel() != num_nodes:
            raise ValueError(f"'{labels_path}' holds {y.numel()} labels for "
                             f"{num_nodes} feature rows; the files must "
                             f"describe the same nodes")
        if edges.size and (edges.min() < 0 or edges.max() >= num_nodes):
            raise ValueError(f"'{edges_path}' names node ids from "
                             f"{edges.min()} to {edges.max()} but there are "
                             f"{num_nodes} feature rows; ids must lie in "
                             f"[0, {num_nodes - 1}]")
        edge_index = torch.from_numpy(edges).t().contiguous()  # [2, E]
        edge_index = to_undirected(edge_index, num_nodes=num_nodes)

        data = Data(x=x, edge_index=edge_index, y=y)
        if self.pre_transform is not None:
            data = self.pre_transform(data)
        self.save([data], self.processed_paths[0])

    def __repr__(self) -> str:
        return f'DiseaseLP({len(self)})'
