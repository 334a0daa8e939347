r"""Trains every mechanism of
:func:`~pyg_attn.compare.available_mechanisms` on one dataset with one
protocol and collects one row per mechanism."""
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch_geometric.data import Data
from tqdm import tqdm

from pyg_attn.compare.mechanisms import Mechanism, available_mechanisms
from pyg_attn.compare.memory import PeakMemory
from pyg_attn.compare.training import QUICK, Protocol, run_seed
from pyg_attn.datasets import load_planetoid


def _planetoid(name: str) -> Callable:
    def load(root: Optional[str] = None):
        return load_planetoid(name, root=root)
    return load


# Node classification datasets with a fixed split, by name: each loader
# takes the data root and returns a PyG dataset whose first graph has
# train/val/test masks.  To add one, add a loader here.
DATASETS: Dict[str, Callable] = {
    'Cora': _planetoid('Cora'),
    'CiteSeer': _planetoid('CiteSeer'),
}


def train_mechanism(
    mechanism: Mechanism,
    dataset: Any,
    protocol: Protocol,
    device: str = 'cpu',
    progress: Any = None,
    data: Optional[Data] = None,
) -> Dict[str, Any]:
    r"""Trains one mechanism for :obj:`protocol.seeds` seeds and returns its
    row: test accuracy mean and (population) standard deviation over seeds,
    mean time per epoch, peak memory above the start of training, learnable
    parameters, and the per-seed results.

    Args:
        mechanism (Mechanism): The mechanism.
        dataset: A PyG dataset of one graph with train/val/test masks.
        protocol (Protocol): Seeds, epochs and patience.
        device (str, optional): The device. (default: :obj:`"cpu"`)
        progress (tqdm, optional): Advanced once per epoch; its total shrinks
            by the epochs early stopping saves. (default: :obj:`None`)
        data (Data, optional): :obj:`dataset[0]` already passed through
            :meth:`Mechanism.data_transform`, for a caller that inspects the
            graph it trains on (e.g. counts HNSW edges per layer); the row's
            :obj:`transform_s` is then :obj:`None`. (default: :obj:`None`:
            transform :obj:`dataset[0]` here)
    """
    hp = mechanism.hyperparameters()
    transform_time = None
    if data is None:
        start = time.perf_counter()
        data = mechanism.data_transform(hp)(dataset[0])
        transform_time = time.perf_counter() - start
    data = data.to(device)
    runs = []
    with PeakMemory(device) as memory:
        for seed in range(protocol.seeds):
            runs.append(run_seed(mechanism, data, dataset.num_classes, seed,
                                 hp, epochs=protocol.epochs,
                                 patience=protocol.patience,
                                 progress=progress))
            if progress is not None:
                progress.total -= protocol.epochs - runs[-1]['epochs']
                progress.refresh()
    accs = [run['test_acc'] for run in runs]
    return dict(
        mechanism=mechanism.name, layer=mechanism.layer,
        origin=mechanism.origin,
        accuracy_mean=statistics.mean(accs),
        accuracy_std=statistics.pstdev(accs),
        epoch_ms=1000 * statistics.mean(run['epoch_time'] for run in runs),
        peak_mib=None if memory.peak is None else memory.peak / 2**20,
        parameters=runs[0]['parameters'],
        num_edges=data.edge_index.size(1),
        transform_s=transform_time,
        accuracies=accs,
        val_accuracies=[run['val_acc'] for run in runs],
        best_epochs=[run['best_epoch'] for run in runs],
        epochs=[run['epochs'] for run in runs],
        hyperparameters=vars(hp).copy(),
        note=mechanism.note,
        memory_method=memory.method,
    )


def compare(
    dataset: str = 'Cora',
    root: Optional[str] = None,
    names: Optional[Sequence[str]] = None,
    protocol: Protocol = QUICK,
    device: str = 'cpu',
    show_progress: bool = True,
    jobs: int = 1,
) -> List[Dict[str, Any]]:
    r"""Trains the chosen mechanisms (all available ones by default) on
    :obj:`dataset` and returns one row per mechanism (see
    :func:`train_mechanism`), in table order.

    Args:
        dataset (str, optional): A key of :obj:`DATASETS`.
            (default: :obj:`"Cora"`)
        root (str, optional): The data root (see
            :func:`~pyg_attn.datasets.data_root`). (default: :obj:`None`)
        names (sequence of str, optional): Mechanism names; :obj:`None` for
            all. (default: :obj:`None`)
        protocol (Protocol, optional): (default: :obj:`QUICK`)
        device (str, optional): (default: :obj:`"cpu"`)
        show_progress (bool, optional): Show a tqdm progress bar.
            (default: :obj:`True`)
        jobs (int, optional): Mechanisms trained at once, each in its own
            process with :obj:`torch.get_num_threads() // jobs` threads (at
            least one); the rows are the same as with :obj:`jobs=1` at that
            thread count, and each row's time and memory are its own
            process's.  The progress bar then counts mechanisms.
            (default: :obj:`1`: in this process)

    Raises:
        ValueError: An unknown dataset or mechanism name, or
            :obj:`jobs < 1`.
        FileNotFoundError: The dataset's raw files are missing (the message
            says which files to put where).
    """
    if dataset not in DATASETS:
        raise ValueError(f"'dataset' ({dataset!r}) must be one of "
                         f"{list(DATASETS)}")
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"'jobs' ({jobs}) must be an integer >= 1")
    available = available_mechanisms()
    names = list(available) if names is None else list(names)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f'unknown or unavailable mechanisms {unknown}; '
                         f'available: {list(available)}')
    data = DATASETS[dataset](root)  # processed here, once, before any worker
    processes = worker_processes(jobs, len(names))
    if processes > 1:
        return _compare_in_processes(dataset, root, names, protocol, device,
                                     show_progress, processes)
    rows = []
    total = len(names) * protocol.seeds * protocol.epochs
    with tqdm(total=total, unit='epoch', disable=not show_progress,
              dynamic_ncols=True) as progress:
        for name in names:
            progress.set_description(f'{dataset} {name}')
            rows.append(train_mechanism(available[name], data, protocol,
                                        device, progress))
    return rows


def _compare_in_processes(dataset: str, root: Optional[str],
                          names: List[str], protocol: Protocol, device: str,
                          show_progress: bool,
                          jobs: int) -> List[Dict[str, Any]]:
    threads = worker_threads(jobs)
    # spawn, not fork: a forked child of a process whose OpenMP pool has
    # run can hang
    context = multiprocessing.get_context('spawn')
    rows = {}
    with ProcessPoolExecutor(jobs, mp_context=context) as pool, \
            tqdm(total=len(names), unit='mechanism',
                 desc=f'{dataset} ({jobs} processes)',
                 disable=not show_progress, dynamic_ncols=True) as progress:
        futures = {
            pool.submit(_train_in_worker, dataset, root, name, protocol,
                        device, threads): name
            for name in names
        }
        for future in as_completed(futures):
            rows[futures[future]] = future.result()
            progress.set_postfix_str(futures[future])
            progress.update()
    return [rows[name] for name in names]


def worker_processes(jobs: int, num_mechanisms: int) -> int:
    """Worker processes :func:`compare` starts (none idle); 1 means it
    trains in its own process."""
    return min(jobs, num_mechanisms)


def worker_threads(jobs: int) -> int:
    """Threads of each of :obj:`jobs` worker processes."""
    return max(1, torch.get_num_threads() // jobs)


def _train_in_worker(dataset: str, root: Optional[str], name: str,
                     protocol: Protocol, device: str,
                     threads: int) -> Dict[str, Any]:
    torch.set_num_threads(threads)
    return train_mechanism(available_mechanisms()[name],
                           DATASETS[dataset](root), protocol, device)


def source_commit() -> Optional[str]:
    r"""The git commit of the :mod:`pyg_attn` checkout, with ``-dirty``
    appended when a tracked Python file or ``pyproject.toml`` differs from
    it (edits to results, notebooks or prose do not count); ``None``
    outside a git checkout (an installed wheel) or without git.  Scripts
    call it as a run starts: the code a process runs is the code it
    imported then."""
    import os
    import subprocess

    import pyg_attn
    root = os.path.dirname(os.path.dirname(os.path.abspath(
        pyg_attn.__file__)))
    try:
        def git(*args: str) -> str:
            return subprocess.run(
                ['git', '-C', root, *args], capture_output=True, text=True,
                check=True, timeout=10).stdout.strip()
        commit = git('rev-parse', 'HEAD')
        dirty = git('status', '--porcelain', '--untracked-files=no', '--',
                    '*.py', 'pyproject.toml')
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ('-dirty' if dirty else '')


def environment(device: str = 'cpu') -> Dict[str, Any]:
    r"""Versions, source commit and hardware, stored beside the results."""
    import platform

    import torch_geometric

    import pyg_attn
    info = dict(torch=torch.__version__,
                torch_geometric=torch_geometric.__version__,
                pyg_attn=pyg_attn.__version__, git_commit=source_commit(),
                python=platform.python_version(),
                platform=platform.platform(),
                processor=platform.processor() or platform.machine(),
                threads=torch.get_num_threads(), device=str(device),
                dtype='float32')
    if torch.device(device).type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(torch.device(device))
    return info
