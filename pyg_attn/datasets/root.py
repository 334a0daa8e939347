import os
import os.path as osp
from typing import Callable, List, Optional

from torch_geometric.datasets import HeterophilousGraphDataset, Planetoid

PLANETOID_NAMES = {'cora': 'Cora', 'citeseer': 'CiteSeer', 'pubmed': 'PubMed'}
PLANETOID_SUFFIXES = ['x', 'tx', 'allx', 'y', 'ty', 'ally', 'graph', 'test.index']
#: how a missing-file message ends
COPY_HINT = ("e.g. by copying the project's raw datasets to a writable root: "
             "`cp -r ../shared/datasets $PYG_ATTN_DATA && "
             "chmod -R u+w $PYG_ATTN_DATA`.")
#: Platonov et al.'s graphs, as PyG's HeterophilousGraphDataset names its
#: folders and files
HETEROPHILOUS_NAMES = ['roman_empire', 'amazon_ratings', 'minesweeper',
                       'tolokers', 'questions']


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
            f"{', '.join(files)} in '{raw_dir}/', {COPY_HINT}")
    return Planetoid(root, name, split='public', transform=transform)


def load_heterophilous(
    name: str,
    root: Optional[str] = None,
    transform: Optional[Callable] = None,
) -> HeterophilousGraphDataset:
    r"""Loads one of the heterophilous graphs of `"A Critical Look at the
    Evaluation of GNNs under Heterophily"
    <https://arxiv.org/abs/2302.11640>`_ (Platonov et al., 2023), with its
    10 given splits (the columns of :obj:`train_mask`, :obj:`val_mask`,
    :obj:`test_mask`), from a local raw file.

    Args:
        name (str): :obj:`"minesweeper"`, :obj:`"tolokers"`,
            :obj:`"roman_empire"`, :obj:`"amazon_ratings"` or
            :obj:`"questions"` (any case, :obj:`-` for :obj:`_` too, as
            PyG accepts them).
        root (str, optional): The data root; see :func:`data_root`.
            The raw file is read from :obj:`<root>/<name>/raw/<name>.npz`
            and PyG writes :obj:`<root>/<name>/processed/` beside it.
            (default: :obj:`None`)
        transform (callable, optional): A transform applied on access.
            (default: :obj:`None`)

    Raises:
        ValueError: If :obj:`name` is not one of those graphs.
        FileNotFoundError: If the raw file is missing; the message names it
            and the folder to put it in.
    """
    key = name.lower().replace('-', '_') if isinstance(name, str) else None
    if key not in HETEROPHILOUS_NAMES:
        raise ValueError(f"'name' ({name!r}) must be one of "
                         f"{HETEROPHILOUS_NAMES}")
    root = data_root(root)
    raw = osp.join(root, key, 'raw', f'{key}.npz')
    if not osp.isfile(raw):
        raise FileNotFoundError(
            f"{key}: '{raw}' is missing. Without network access PyG cannot "
            f"download it: put {key}.npz in '{osp.dirname(raw)}/', "
            f"{COPY_HINT}")
    return HeterophilousGraphDataset(root, key, transform=transform)
