import os
import os.path as osp
from typing import Callable, List, Optional

from torch_geometric.datasets import Planetoid

PLANETOID_NAMES = {'cora': 'Cora', 'citeseer': 'CiteSeer', 'pubmed': 'PubMed'}
PLANETOID_SUFFIXES = ['x', 'tx', 'allx', 'y', 'ty', 'ally', 'graph', 'test.index']


def data_root(root: Optional[str] = None) -> str:
    r"""Returns the folder datasets live under.

    Args:
        root (str, optional): An explicit root; wins when given.
            (default: :obj:`None`, then the environment variable
            :obj:`PYG_ATTN_DATA`, then :obj:`./data`)
    """
    if root:
        return str(root)
    return os.environ.get('PYG_ATTN_DATA') or './data'


def planetoid_raw_files(name: str) -> List[str]:
    r"""The eight raw file names PyG's :class:`Planetoid` reads for
    :obj:`name` (:obj:`ind.cora.x`, …).

    Args:
        name (str): The dataset name (:obj:`"Cora"`, :obj:`"CiteSeer"`,
            :obj:`"PubMed"`, any case).
    """
    return [f'ind.{name.lower()}.{suffix}' for suffix in PLANETOID_SUFFIXES]


def load_planetoid(
    name: str,
    root: Optional[str] = None,
    transform: Optional[Callable] = None,
) -> Planetoid:
    r"""Loads a Planetoid citation graph with its public split
    (Yang et al., 2016) from local raw files.

    Args:
        name (str): :obj:`"Cora"`, :obj:`"CiteSeer"` or :obj:`"PubMed"`
            (any case).
        root (str, optional): The data root; see :func:`data_root`.
            The raw files are read from :obj:`<root>/<Name>/raw/` and PyG
            writes :obj:`<root>/<Name>/processed/` beside them.
            (default: :obj:`None`)
        transform (callable, optional): A transform applied on access, e.g.
            :class:`torch_geometric.transforms.NormalizeFeatures`.
            (default: :obj:`None`)

    Raises:
        ValueError: If :obj:`name` is not a Planetoid dataset.
        FileNotFoundError: If any raw file is missing; the message lists the
            files and the folder to put them in.
    """
    if name.lower() not in PLANETOID_NAMES:
        raise ValueError(f"'name' ({name!r}) must be one of "
                         f"{sorted(PLANETOID_NAMES.values())}")
    name = PLANETOID_NAMES[name.lower()]
    root = data_root(root)
    raw_dir = osp.join(root, name, 'raw')
    files = planetoid_raw_files(name)
    missing = [f for f in files if not osp.isfile(osp.join(raw_dir, f))]
    if missing:
        raise FileNotFoundError(
            f"{name}: {len(missing)} of its {len(files)} raw files are "
            f"missing from '{raw_dir}/' ({', '.join(missing)}). Without "
            f"network access PyG cannot download them: put "
            f"{', '.join(files)} in '{raw_dir}/', e.g. by copying the "
            f"project's raw datasets to a writable root: "
            f"`cp -r ../shared/datasets $PYG_ATTN_DATA && "
            f"chmod -R u+w $PYG_ATTN_DATA`.")
    return Planetoid(root, name, split='public', transform=transform)
