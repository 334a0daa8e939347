r"""The benchmark harness: one command per suite, results in
``benchmarks/results/<suite>.json`` and ``<suite>.csv``.

Suites:

- ``accuracy``: every mechanism and PyG baseline, trained with the
  published protocol of each task.  Cora and CiteSeer through ``pyg-attn
  compare`` (:func:`pyg_attn.compare.compare`: public split, GAT's
  protocol, test accuracy over 10 seeds, with time per epoch, peak memory
  and parameters; ``examples/node_classification.py`` where that package
  is missing); disease_lp with every ``--conv`` of
  ``examples/link_prediction.py`` (HGCN's protocol, test ROC AUC over 10
  seeds); minesweeper and tolokers with every ``--conv`` of
  ``examples/heterophilous.py`` (Platonov et al.'s 10 given splits, ROC
  AUC).  A script that is not there is skipped with a note, so the suite
  runs whichever exist; a failing run is recorded with its ``error``.
- ``speed``: forward+backward time of each layer in
  ``benchmarks.layers.PAIRS`` against its PyG peer, interleaved in one
  process (``benchmarks.layers.time_pair``), and the ratio ours / PyG.
- ``memory``: peak memory of the same pairs during one forward+backward
  pass, each layer alone in a fresh child process
  (``benchmarks.layers.measure_memory``), and the ratio.
- ``scaling``: time and memory against N (1e3 to 1e6 nodes) and against the
  average degree, for the exact, flash and linear layers and dense softmax
  attention, with fitted log-log slopes (``benchmarks.scaling``).

Every file records the torch and PyG versions, the CPU model, the GPU (if
any), the dtype, the thread count, the date, the git commit (``-dirty``
when a tracked Python file or ``pyproject.toml`` differs from it) and the
command.
The CSV carries the same metadata as ``# key: value`` lines above its header
(``pandas.read_csv(path, comment='#')`` reads it).

Correctness gate: benchmarks run only after the correctness tests pass.
Before any suite, the harness runs ``python -m pytest -q -x tests/nn
tests/functional`` and stops (exit 1, nothing written) if it fails;
``--no-gate`` skips it (the metadata then says ``gate: skipped``).

``--quick`` is a short run for CI and the notebooks (fewer seeds, epochs,
splits and sizes; results in ``benchmarks/results/quick/`` unless
``--out-dir`` says otherwise, never over the published ones).
``--notebooks`` executes ``benchmarks/compare_mechanisms.ipynb`` and
``benchmarks/scaling.ipynb`` on the results (in place; with ``--quick``,
copies in the output folder), so their plots show the numbers.
``--full-protocol-table`` prints the README's table of the heterophilous
runs with Platonov et al.'s full protocol (``heterophilous_full/``, run
split by split): mean test ROC AUC over the splits by mechanism and depth.

    python -m benchmarks.run --suite accuracy speed memory scaling
    python -m benchmarks.run --suite all --notebooks
    python -m benchmarks.run --suite speed --graphs cora --pairs flash
    python -m benchmarks.run --suite all --quick --no-gate
    python -m benchmarks.run --notebooks          # only re-execute notebooks
    python -m benchmarks.run --full-protocol-table  # the README's table
"""
import argparse
import csv
import datetime
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# torch, PyG and the suites' modules are imported where they are used: the
# notebooks import this module only to read results (a kernel that imports
# nothing heavy starts in a second), and reach them as ``run.layers`` and
# ``run.scaling`` when they re-run a suite.

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / 'benchmarks' / 'results'
SUITES = ('accuracy', 'speed', 'memory', 'scaling')
GATE = ('tests/nn', 'tests/functional')
NOTEBOOKS = ('compare_mechanisms.ipynb', 'scaling.ipynb')
QUICK_ENV = 'PYG_ATTN_NOTEBOOK_QUICK'  # read by the notebooks
RESULTS_ENV = 'PYG_ATTN_RESULTS'  # the folder the notebooks read

# accuracy: dataset -> (example script, task); the script's own protocol
TASKS = {
    'Cora': ('node_classification.py', 'node_classification'),
    'CiteSeer': ('node_classification.py', 'node_classification'),
    'disease_lp': ('link_prediction.py', 'link_prediction'),
    'minesweeper': ('heterophilous.py', 'heterophilous'),
    'tolokers': ('heterophilous.py', 'heterophilous'),
}
# --quick: these flags of each task's script, where the script has them
QUICK_ACCURACY = {
    'node_classification': {'--seeds': 2, '--epochs': 100},
    'link_prediction': {'--seeds': 2, '--epochs': 100},
    'heterophilous': {'--splits': 2, '--epochs': 100, '--hidden': 64,
                      '--eval-every': 10},
}
QUICK_DEFAULT = {'--seeds': 2, '--epochs': 50, '--splits': 2}
QUICK_GRAPHS, FULL_GRAPHS = ['cora'], ['cora', 'synthetic']
QUICK_REPEATS, FULL_REPEATS = 3, 5
PYG_BASELINES = {'gcn', 'gat', 'transformer'}  # examples' --conv names
CONTROLS = {'mlp'}  # --conv names that are no graph layer at all
# the heterophilous runs with Platonov et al.'s full protocol, split by split
FULL_PROTOCOL = 'heterophilous_full'
# what Platonov et al. (2023) published under that protocol (test ROC AUC,
# mean over the 10 splits, best of 1 to 5 layers) for the model each
# mechanism is closest to: GAT for the GAT layers (ours and PyG's), GT (a
# graph transformer) for the dot-product ones (ours and TransformerConv)
PUBLISHED_FULL = {
    ('minesweeper', 'gat'): ('GAT', 0.9201),
    ('minesweeper', 'edge_gat'): ('GAT', 0.9201),
    ('minesweeper', 'transformer'): ('GT', 0.9185),
    ('minesweeper', 'dot_product'): ('GT', 0.9185),
    ('tolokers', 'gat'): ('GAT', 0.8370),
    ('tolokers', 'edge_gat'): ('GAT', 0.8370),
    ('tolokers', 'transformer'): ('GT', 0.8323),
    ('tolokers', 'dot_product'): ('GT', 0.8323),
}
# the metrics an example's JSON may report: (name, values, mean, std) keys
METRICS = [('roc_auc', 'roc_auc', 'roc_auc_mean', 'roc_auc_std'),
           ('roc_auc', 'test_auc', 'mean', 'std'),
           ('accuracy', 'accuracies', 'mean', 'std'),
           ('accuracy', 'accuracy', 'accuracy_mean', 'accuracy_std'),
           ('accuracy', 'acc', 'acc_mean', 'acc_std')]


def __getattr__(name: str):
    if name in ('layers', 'scaling'):
        return importlib.import_module(f'benchmarks.{name}')
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


# --- metadata and files -------------------------------------------------

def gpu_name():
    import torch
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return None


def metadata(argv, **extra) -> dict:
    """What a reader needs to reproduce or compare a result."""
    import torch
    import torch_geometric

    import pyg_attn
    from benchmarks.linear_attention import cpu_name
    from pyg_attn.compare.runner import source_commit
    return dict(
        torch=torch.__version__, torch_geometric=torch_geometric.__version__,
        pyg_attn=pyg_attn.__version__, python=platform.python_version(),
        platform=platform.platform(), cpu=cpu_name(),
        cpu_count=os.cpu_count(), gpu=gpu_name(), dtype='float32',
        threads=torch.get_num_threads(),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec='seconds'),
        git_commit=source_commit(),
        command='python -m benchmarks.run ' + shlex.join(argv), **extra)


def write_results(out_dir: Path, name: str, meta: dict, rows: list,
                  **extra) -> Path:
    """``<name>.json`` (``meta``, ``rows`` and ``extra``) and ``<name>.csv``
    (``rows``, lists joined by spaces, under ``# key: value`` lines)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f'{name}.json'
    path.write_text(json.dumps(dict(meta=meta, rows=rows, **extra),
                               indent=2))
    write_csv(out_dir / f'{name}.csv', meta, rows)
    print(f'wrote {path} and {path.with_suffix(".csv")}')
    return path


def write_csv(path: Path, meta: dict, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, 'w', newline='') as f:
        for key, value in meta.items():
            if not isinstance(value, (dict, list)):
                f.write(f'# {key}: {value}\n')
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ' '.join(map(str, v)) if isinstance(v, list)
                             else v for k, v in row.items()})


def load_results(suite: str, results_dir=RESULTS):
    """The JSON a suite wrote (``dict(meta=…, rows=…, …)``), or ``None``
    when the file is missing."""
    path = Path(results_dir) / f'{suite}.json'
    return json.loads(path.read_text()) if path.is_file() else None


# --- correctness gate ----------------------------------------------------

def run_gate(paths=GATE) -> str:
    """Runs the correctness tests; returns pytest's summary line or raises
    :class:`SystemExit` when they fail."""
    cmd = [sys.executable, '-m', 'pytest', '-q', '-x', *paths]
    print(f'gate: {shlex.join(cmd)}', flush=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    last = ''
    for line in proc.stdout:
        print(line, end='', flush=True)
        last = line.strip() or last
    if proc.wait() != 0:
        raise SystemExit(f'gate failed ({last}): benchmarks run only after '
                         f'the correctness tests pass. Fix them, or pass '
                         f'--no-gate to benchmark anyway.')
    return last


# --- accuracy --------------------------------------------------------------

class _Parsed(Exception):
    pass


def load_example(script: str):
    """The example module ``examples/<script>``, or ``None`` when absent."""
    path = ROOT / 'examples' / script
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(
        f'_bench_{path.stem}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def example_options(module) -> dict:
    """``{option string: argparse action}`` of the script's parser, taken
    from its first ``parse_args`` call (which is interrupted)."""
    captured = []
    original = argparse.ArgumentParser.parse_args

    def capture(self, *args, **kwargs):
        captured.append(self)
        raise _Parsed

    argparse.ArgumentParser.parse_args = capture
    try:
        (getattr(module, 'parse_args', None) or module.main)([])
    except _Parsed:
        pass
    finally:
        argparse.ArgumentParser.parse_args = original
    if not captured:
        raise RuntimeError(f'{module.__file__} never calls parse_args')
    return {opt: action for action in captured[0]._actions
            for opt in action.option_strings}


def summarise(result: dict) -> dict:
    """``metric``, ``mean``, ``std``, ``values`` and ``epoch_time_s`` from an
    example's JSON results."""
    for metric, values, mean, std in METRICS:
        if mean in result and values in result:
            return dict(metric=metric, mean=result[mean],
                        std=result.get(std), values=result[values],
                        num_runs=len(result[values]),
                        epoch_time_s=result.get('epoch_time_mean'))
    raise ValueError(f'no known metric among the keys {sorted(result)}')


def origin(conv: str) -> str:
    r"""Who made the layer: :obj:`"PyG"`, :obj:`"control"` (a model
    without graph layers, e.g. an MLP) or :obj:`"pyg_attn"`."""
    if conv in PYG_BASELINES:
        return 'PyG'
    return 'control' if conv in CONTROLS else 'pyg_attn'


def example_rows(results_dir=RESULTS) -> list:
    """Accuracy rows from the files the example scripts and ``pyg-attn
    compare`` wrote in ``results_dir`` and its subfolders, for reading
    results without an accuracy suite run: the scripts' own JSON
    (``node_classification_<dataset>_<conv>.json``, …) and each
    ``compare*.json`` (its rows carry time per epoch, peak memory and
    parameters).  Where several files hold one dataset and mechanism, the
    row over the most seeds or splits wins (a quick run never hides a
    full one; on a tie, ``compare``'s, and between two ``compare`` files
    the later in path order, so a rerun saved beside a run replaces it);
    ``source`` names its file.  The folder :obj:`FULL_PROTOCOL` is left
    out: its runs take another protocol than the reduced runs of the other
    mechanisms (:func:`full_protocol_splits` shows them)."""
    best = {}
    root = Path(results_dir)
    paths = sorted(root.glob('*_*_*.json')) + sorted(
        path for path in root.glob('*/*.json')
        if path.parent.name != FULL_PROTOCOL)
    # on a tie, compare's rows win: one protocol for all its mechanisms
    paths.sort(key=lambda path: not path.name.startswith('compare'))
    for path in paths:
        try:
            result = json.loads(path.read_text())
            found = (_compare_rows(result) if path.name.startswith('compare')
                     else [_example_row(result)])
        except (ValueError, KeyError, TypeError):
            continue
        from_compare = path.name.startswith('compare')
        for row in found:
            row['source'] = str(path.relative_to(root))
            key = row['dataset'], row['conv']
            old, old_from_compare = best.get(key, (None, False))
            if old is None or row['num_runs'] > old['num_runs'] or (
                    row['num_runs'] == old['num_runs'] and
                    old_from_compare and from_compare):
                best[key] = row, from_compare
    return [row for row, _ in best.values()]


def full_protocol_splits(results_dir=RESULTS, full=FULL_PROTOCOL,
                         reduced='heterophilous_reduced') -> list:
    """One row per dataset, mechanism, depth and given split of the
    heterophilous runs in ``results_dir/full`` (``examples/heterophilous.py``
    with Platonov et al.'s settings, run split by split with ``--split-ids``
    and merged by ``benchmarks.merge_splits``): the test and validation ROC
    AUC, the best step and the time per step, beside the test ROC AUC the
    run in ``results_dir/reduced/<dataset>_<conv>.json`` got on the same
    split with as many layers (``None`` where it has no such run), and
    the published mean of the model closest to the mechanism
    (:obj:`PUBLISHED_FULL`; ``None`` where there is none).  A split
    found in several files (a part and the merged file) counts once, from
    the first file in path order; ``source`` names it.  Files that are no
    such results are skipped."""
    from benchmarks.merge_splits import PER_SPLIT, per_split
    root = Path(results_dir)
    rows = {}
    for path in sorted((root / full).glob('*.json')):
        try:
            result = json.loads(path.read_text())
            columns = zip(result['splits'],
                          *(per_split(result, key) for key in PER_SPLIT))
            key = result['dataset'], result['conv'], result['args']['layers']
        except (ValueError, KeyError, TypeError):
            continue
        for split, test, val, best, step_time in columns:
            rows.setdefault(key + (split,), dict(
                dataset=key[0], conv=key[1], layers=key[2], split=split,
                test_auc=test, val_auc=val, best_step=best,
                ms_per_step=1e3 * step_time,
                source=str(path.relative_to(root))))
    runs = {}  # each reduced run read once
    for row in rows.values():
        row['published_model'], row['published_test_auc'] = PUBLISHED_FULL.get(
            (row['dataset'], row['conv']), (None, None))
        row['reduced_test_auc'] = None
        name = f"{row['dataset']}_{row['conv']}.json"
        if name not in runs:
            try:
                runs[name] = json.loads((root / reduced / name).read_text())
            except (OSError, ValueError):
                runs[name] = None
        result = runs[name]
        try:
            if result['args']['layers'] == row['layers']:
                row['reduced_test_auc'] = result['test_auc'][
                    list(result['splits']).index(row['split'])]
        except (ValueError, KeyError, TypeError, IndexError):
            pass
    return sorted(rows.values(), key=lambda r: (
        r['dataset'], r['conv'], r['layers'], r['split']))


def full_protocol_summary(results_dir=RESULTS, full=FULL_PROTOCOL) -> list:
    """One row per dataset, mechanism and depth of
    :func:`full_protocol_splits`: the splits run, the mean and
    population standard deviation of the test ROC AUC over them (as
    ``benchmarks.merge_splits`` computes them), the mean validation ROC
    AUC, the median time per step and the published mean of the nearest
    model."""
    groups = {}
    for row in full_protocol_splits(results_dir, full):
        key = row['dataset'], row['conv'], row['layers']
        groups.setdefault(key, []).append(row)
    summary = []
    for (dataset, conv, layers), rows in groups.items():
        test = [row['test_auc'] for row in rows]
        summary.append(dict(
            dataset=dataset, conv=conv, layers=layers,
            splits=[row['split'] for row in rows],
            test_auc_mean=statistics.mean(test),
            test_auc_std=statistics.pstdev(test),
            val_auc_mean=statistics.mean(row['val_auc'] for row in rows),
            ms_per_step_median=statistics.median(
                row['ms_per_step'] for row in rows),
            published_model=rows[0]['published_model'],
            published_test_auc=rows[0]['published_test_auc']))
    return summary


def _split_list(splits: list) -> str:
    """``0–9`` for a run of consecutive splits, else ``0, 1, 4``."""
    if len(splits) > 2 and splits == list(range(splits[0], splits[-1] + 1)):
        return f'{splits[0]}–{splits[-1]}'
    return ', '.join(map(str, splits))


def full_protocol_table(results_dir=RESULTS, full=FULL_PROTOCOL) -> str:
    """:func:`full_protocol_summary` as a Markdown table (ROC AUC in %),
    the one the README shows: ``python -m benchmarks.run
    --full-protocol-table`` prints it."""
    lines = ['| dataset | conv | layers | splits | test ROC AUC | '
             'validation | ms / step (median) | published (best of 1–5 '
             'layers) |', '|---|---|---|---|---|---|---|---|']
    for row in full_protocol_summary(results_dir, full):
        test = f"{100 * row['test_auc_mean']:.2f}"
        if len(row['splits']) > 1:
            test += f" ± {100 * row['test_auc_std']:.2f}"
        published = ('—' if row['published_model'] is None else
                     f"{row['published_model']} "
                     f"{100 * row['published_test_auc']:.2f}")
        lines.append(
            f"| {row['dataset']} | `{row['conv']}` | {row['layers']} | "
            f"{_split_list(row['splits'])} | {test} | "
            f"{100 * row['val_auc_mean']:.2f} | "
            f"{row['ms_per_step_median']:.0f} | {published} |")
    return '\n'.join(lines) + '\n'


def _example_row(result: dict) -> dict:
    row = dict(dataset=result['dataset'], conv=result['conv'],
               origin=origin(result['conv']))
    row.update(summarise(result))
    return row


def _compare_rows(result: dict) -> list:
    """The rows of ``pyg-attn compare``'s JSON in the accuracy suite's
    form."""
    return [dict(dataset=result['dataset'], conv=r['mechanism'],
                 **compare_fields(r)) for r in result['rows']]


def compare_fields(row: dict) -> dict:
    """An accuracy-suite row's fields from a row of
    :func:`pyg_attn.compare.compare`."""
    return dict(metric='accuracy', mean=row['accuracy_mean'],
                std=row['accuracy_std'], values=row['accuracies'],
                num_runs=len(row['accuracies']),
                epoch_time_s=row['epoch_ms'] / 1000, layer=row['layer'],
                origin=row['origin'], parameters=row['parameters'],
                peak_mem_bytes=None if row['peak_mib'] is None else
                round(row['peak_mib'] * 2**20), note=row.get('note'))


def accuracy_plan(args) -> list:
    """``(dataset, script, task)`` of the requested datasets."""
    datasets = args.datasets or list(TASKS)
    unknown = sorted(set(datasets) - set(TASKS))
    if unknown:
        raise SystemExit(f'unknown dataset(s) {unknown}; choose from '
                         f'{list(TASKS)}')
    return [(d, ) + TASKS[d] for d in datasets]


def example_argv(options: dict, task: str, dataset: str, conv: str,
                 out: Path, args) -> list:
    argv = ['--dataset', dataset, '--conv', conv, '--out', str(out)]
    overrides = {'--root': args.root, '--device': args.device}
    if args.quick:
        overrides.update(QUICK_ACCURACY.get(task, QUICK_DEFAULT))
    for flag, value in (('--seeds', args.seeds), ('--epochs', args.epochs),
                        ('--splits', args.splits)):
        if value is not None:
            overrides[flag] = value
    for flag, value in overrides.items():
        if flag in options and value is not None:
            argv += [flag, str(value)]
    return argv


def compare_datasets() -> list:
    """The datasets ``pyg-attn compare`` trains on (none when
    :mod:`pyg_attn.compare` is missing)."""
    try:
        from pyg_attn.compare import DATASETS
    except ImportError:
        return []
    return list(DATASETS)


def run_compare(dataset: str, args) -> list:
    """Node classification rows from :func:`pyg_attn.compare.compare`, one
    call per mechanism (a failing one costs only its own row), with its
    quick or published (``--full``) protocol."""
    import torch

    from pyg_attn.compare import (FULL, QUICK, Protocol,
                                  available_mechanisms, compare)
    base = QUICK if args.quick else FULL
    protocol = Protocol(seeds=args.seeds or base.seeds,
                        epochs=args.epochs or base.epochs,
                        patience=base.patience)
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    flags = [] if args.quick else ['--full']
    flags += [f for flag, value, default in (
        ('--seeds', protocol.seeds, base.seeds),
        ('--epochs', protocol.epochs, base.epochs))
        if value != default for f in (flag, str(value))]
    rows = []
    for name in available_mechanisms():
        if args.convs and name not in args.convs:
            continue
        row = dict(task='node_classification', dataset=dataset, conv=name,
                   script='pyg_attn.compare', command=shlex.join(
                       ['pyg-attn', 'compare', '--dataset', dataset, *flags,
                        '--mechanisms', name]))
        start = time.perf_counter()
        try:
            result, = compare(dataset, root=args.root, names=[name],
                              protocol=protocol, device=device)
            row.update(compare_fields(result))
        except Exception as error:  # one failure must not end a run
            row['error'] = f'{type(error).__name__}: {error}'
            print(f'{dataset} {name}: {row["error"]}', file=sys.stderr,
                  flush=True)
        row['wall_s'] = time.perf_counter() - start
        rows.append(row)
    return rows


def run_accuracy(args) -> tuple:
    """Trains every mechanism and baseline on each dataset: through
    ``pyg-attn compare`` on its datasets, else every ``--conv`` choice of
    the dataset's example script.  Returns the rows and the notes (missing
    scripts, datasets)."""
    rows, notes, modules = [], [], {}
    via_compare = compare_datasets()
    scratch = Path(tempfile.mkdtemp(prefix='pyg_attn_accuracy_'))
    try:
        for dataset, script, task in accuracy_plan(args):
            if dataset in via_compare:
                rows += run_compare(dataset, args)
                continue
            if script not in modules:
                modules[script] = load_example(script)
            module = modules[script]
            if module is None:
                notes.append(f'{dataset}: examples/{script} does not exist '
                             f'yet; skipped')
                print(notes[-1], flush=True)
                continue
            options = example_options(module)
            datasets = options['--dataset'].choices or []
            if dataset not in datasets:
                notes.append(f'{dataset}: examples/{script} offers '
                             f'{list(datasets)}; skipped')
                print(notes[-1], flush=True)
                continue
            convs = list(options['--conv'].choices)
            if args.convs:
                convs = [c for c in convs if c in args.convs]
            for conv in convs:
                out = scratch / f'{task}_{dataset}_{conv}.json'
                argv = example_argv(options, task, dataset, conv, out,
                                    args)
                row = dict(task=task, dataset=dataset, conv=conv,
                           origin=origin(conv), script=f'examples/{script}',
                           command=f'python examples/{script} '
                           + shlex.join(argv[:4] + argv[6:]))
                start = time.perf_counter()
                try:
                    code = module.main(argv)
                    if code:
                        raise RuntimeError(f'exit code {code} (data '
                                           f'missing? see the message above)')
                    row.update(summarise(json.loads(out.read_text())))
                except Exception as error:  # one failure must not end a run
                    row['error'] = f'{type(error).__name__}: {error}'
                    print(f'{dataset} {conv}: {row["error"]}',
                          file=sys.stderr, flush=True)
                row['wall_s'] = time.perf_counter() - start
                rows.append(row)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print_accuracy(rows)
    return rows, notes


def print_accuracy(rows: list) -> None:
    print(f'{"dataset":<12} {"conv":<14} {"metric":<9} {"mean ± std":>15} '
          f'{"runs":>4} {"ms/epoch":>9}')
    for r in rows:
        if 'error' in r:
            print(f'{r["dataset"]:<12} {r["conv"]:<14} error: {r["error"]}')
            continue
        std = 100 * (r['std'] or 0.0)
        print(f'{r["dataset"]:<12} {r["conv"]:<14} {r["metric"]:<9} '
              f'{100 * r["mean"]:7.2f} ± {std:5.2f} {r["num_runs"]:>4} '
              f'{1e3 * (r["epoch_time_s"] or 0):9.1f}', flush=True)


# --- speed and memory ------------------------------------------------------

def _name(obj) -> str:
    return getattr(obj, '__name__', None) or type(obj).__name__


def pair_names(args) -> list:
    from benchmarks import layers
    pairs = args.pairs or list(layers.PAIRS)
    unknown = sorted(set(pairs) - set(layers.PAIRS))
    if unknown:
        raise SystemExit(f'unknown pair(s) {unknown}; benchmarks.layers.'
                         f'PAIRS has {list(layers.PAIRS)}')
    return pairs


def graph_names(args) -> list:
    from benchmarks import layers
    graphs = args.graphs or (QUICK_GRAPHS if args.quick else FULL_GRAPHS)
    for g in graphs:
        if g not in layers.GRAPHS and not re.fullmatch(r'random-\d+-\d+', g):
            raise SystemExit(f'unknown graph {g!r}; choose from '
                             f'{list(layers.GRAPHS)} or random-<N>-<E>')
    return graphs


def _pair_row(graph_name: str, graph, pair: str) -> dict:
    from benchmarks import layers
    ours, peer = layers.PAIRS[pair]
    row = dict(graph=graph_name, pair=pair, layer=_name(ours),
               peer=_name(peer))
    if graph is not None:
        row.update(num_nodes=graph[0].size(0), num_edges=graph[1].size(1))
    return row


def _graphs(args):
    """``(name, graph or None, error or None)`` for each requested graph."""
    from benchmarks import layers
    for name in graph_names(args):
        try:
            yield name, layers.make_graph(name, args.root), None
        except (FileNotFoundError, ValueError) as error:
            print(f'{name}: {error}', file=sys.stderr, flush=True)
            yield name, None, f'{type(error).__name__}: {error}'


def run_speed(args) -> list:
    from benchmarks import layers
    repeats = args.repeats or (QUICK_REPEATS if args.quick else FULL_REPEATS)
    rows = []
    print(f'{"graph":<18} {"layer":<26} {"ours ms":>9} {"PyG ms":>9} '
          f'{"ratio":>6}')
    for graph_name, graph, error in _graphs(args):
        for pair in pair_names(args):
            row = _pair_row(graph_name, graph, pair)
            try:
                if error:
                    raise RuntimeError(error)
                t_ours, t_peer = layers.time_pair(pair, graph, repeats)
                row.update(time_ours_s=t_ours, time_peer_s=t_peer,
                           time_ratio=t_ours / t_peer, repeats=repeats)
                print(f'{graph_name:<18} {row["layer"]:<26} '
                      f'{t_ours * 1e3:9.1f} {t_peer * 1e3:9.1f} '
                      f'{row["time_ratio"]:6.2f}', flush=True)
            except Exception as exc:  # one failure must not end a run
                row['error'] = f'{type(exc).__name__}: {exc}'
                print(f'{graph_name:<18} {row["layer"]:<26} error: '
                      f'{row["error"]}', flush=True)
            rows.append(row)
    return rows


def run_memory(args) -> list:
    from benchmarks import layers
    rows = []
    print(f'{"graph":<18} {"layer":<26} {"ours MiB":>9} {"PyG MiB":>9} '
          f'{"ratio":>6}')
    for graph_name, graph, error in _graphs(args):
        for pair in pair_names(args):
            row = _pair_row(graph_name, graph, pair)
            try:
                if error:
                    raise RuntimeError(error)
                m_ours, m_peer = (layers.measure_memory(
                    pair, which, graph_name, args.root) for which in (0, 1))
                row.update(mem_ours_bytes=m_ours, mem_peer_bytes=m_peer,
                           mem_ratio=m_ours / m_peer)
                print(f'{graph_name:<18} {row["layer"]:<26} '
                      f'{m_ours / 2**20:9.1f} {m_peer / 2**20:9.1f} '
                      f'{row["mem_ratio"]:6.2f}', flush=True)
            except subprocess.CalledProcessError as exc:
                row['error'] = (f'memory probe failed (exit code '
                                f'{exc.returncode}): '
                                f'{(exc.stderr or "").strip()[-300:]}')
            except Exception as exc:  # one failure must not end a run
                row['error'] = f'{type(exc).__name__}: {exc}'
            if 'error' in row:
                print(f'{graph_name:<18} {row["layer"]:<26} error: '
                      f'{row["error"]}', flush=True)
            rows.append(row)
    return rows


def pair_config() -> dict:
    from benchmarks import layers
    return dict(heads=layers.HEADS, channels=layers.CHANNELS,
                edge_dim=layers.EDGE_DIM)


# --- notebooks -------------------------------------------------------------

def execute_notebook(path, out=None, quick=False, results_dir=None,
                     timeout=1800):
    """Executes the notebook at ``path`` top to bottom with nbclient (the
    kernel's working directory is ``benchmarks/``) and writes it with its
    outputs to ``out`` (default: in place).  ``quick`` sets
    ``PYG_ATTN_NOTEBOOK_QUICK=1`` (the notebook re-runs tiny suites into a
    temporary folder); ``results_dir`` sets ``PYG_ATTN_RESULTS``, the folder
    it reads.  A failing cell raises ``nbclient``'s ``CellExecutionError``."""
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(str(path), as_version=4)
    env = {QUICK_ENV: '1' if quick else '0'}
    if results_dir is not None:
        env[RESULTS_ENV] = str(results_dir)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the environment
    try:
        NotebookClient(nb, timeout=timeout, kernel_name='python3',
                       resources={'metadata': {
                           'path': str(ROOT / 'benchmarks')}}).execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    nbformat.write(nb, str(out or path))
    return nb


def save_figure(fig, results_dir: Path, name: str) -> Path:
    """Saves a notebook's chart as ``<results_dir>/figures/<name>.png``,
    beside the results it plots (the README embeds the committed ones)."""
    path = Path(results_dir) / 'figures' / f'{name}.png'
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches='tight')
    return path


def run_notebooks(args, out_dir: Path) -> None:
    for name in NOTEBOOKS:
        src = ROOT / 'benchmarks' / name
        out = out_dir / name if args.quick else src
        print(f'executing {src} -> {out}', flush=True)
        execute_notebook(src, out, quick=args.quick,
                         results_dir=None if args.quick else out_dir)


# --- command line ----------------------------------------------------------

def parse_args(argv):
    from benchmarks import layers, scaling
    parser = argparse.ArgumentParser(
        prog='python -m benchmarks.run',
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--suite', nargs='+', default=[],
                        choices=SUITES + ('all', ))
    parser.add_argument('--quick', action='store_true',
                        help='short run: fewer seeds, epochs, splits, sizes')
    parser.add_argument('--gate', action=argparse.BooleanOptionalAction,
                        default=True, help='run pytest -x tests/nn '
                        'tests/functional first and stop if it fails '
                        '(default: on)')
    parser.add_argument('--out-dir', type=Path, default=None,
                        help='default: benchmarks/results, or '
                        'benchmarks/results/quick with --quick')
    parser.add_argument('--root', default=None, help='data root (default: '
                        '$PYG_ATTN_DATA, else ./data)')
    parser.add_argument('--notebooks', action='store_true',
                        help='execute the two notebooks on the results '
                        '(after the suites)')
    parser.add_argument('--full-protocol-table', action='store_true',
                        help='print the Markdown table of the full-protocol '
                        'heterophilous runs in the results folder (mean '
                        'over their splits by mechanism and depth)')
    acc = parser.add_argument_group('accuracy')
    acc.add_argument('--datasets', nargs='+', default=None,
                     help=f'default: {" ".join(TASKS)}')
    acc.add_argument('--convs', nargs='+', default=None,
                     help="only these of each script's --conv choices")
    acc.add_argument('--seeds', type=int, default=None)
    acc.add_argument('--epochs', type=int, default=None)
    acc.add_argument('--splits', type=int, default=None,
                     help='heterophilous: number of the given splits')
    acc.add_argument('--device', default=None,
                     help='default: cuda if available, else cpu')
    pairs = parser.add_argument_group('speed and memory')
    pairs.add_argument('--graphs', nargs='+', default=None,
                       help=f'{list(layers.GRAPHS)} or random-<N>-<E> '
                       f'(default: {" ".join(FULL_GRAPHS)}; quick: '
                       f'{" ".join(QUICK_GRAPHS)})')
    pairs.add_argument('--pairs', nargs='+', default=None,
                       help=f'default: all of benchmarks.layers.PAIRS '
                       f'({" ".join(layers.PAIRS)})')
    pairs.add_argument('--repeats', type=int, default=None,
                       help=f'timed passes of speed (default: {FULL_REPEATS}'
                       f', quick: {QUICK_REPEATS}) and scaling (default: '
                       f'{scaling.FULL["repeats"]}, quick: '
                       f'{scaling.QUICK["repeats"]})')
    sc = parser.add_argument_group('scaling')
    sc.add_argument('--layers', nargs='+', default=list(scaling.LAYERS),
                    choices=scaling.LAYERS)
    sc.add_argument('--nodes', nargs='+', type=int, default=None,
                    help=f'N sweep (default: {scaling.FULL["nodes"]})')
    sc.add_argument('--degree', type=int, default=None,
                    help='average degree of the N sweep (default: 10)')
    sc.add_argument('--degree-nodes', type=int, default=None,
                    help='N of the degree sweep (default: 10000)')
    sc.add_argument('--degrees', nargs='+', type=int, default=None,
                    help=f'degree sweep (default: {scaling.FULL["degrees"]})')
    sc.add_argument('--dense-max-nodes', type=int, default=None,
                    help='largest N for dense attention (default: 10000)')
    sc.add_argument('--flash-chunk-size', type=int, default=None,
                    help="the flash layer's edges per chunk (default: its "
                    'own, 65536)')
    sc.add_argument('--timeout', type=float, default=7200.0,
                    help='seconds per scaling child process')
    args = parser.parse_args(argv)
    if 'all' in args.suite:
        args.suite = list(SUITES)
    if not (args.suite or args.notebooks or args.full_protocol_table):
        parser.error('give --suite (and/or --notebooks, '
                     '--full-protocol-table)')
    return args


def results_folder(args) -> Path:
    """``--out-dir``, else the published folder, or its ``quick/``
    subfolder for a quick run."""
    return args.out_dir or (RESULTS / 'quick' if args.quick else RESULTS)


def main(argv=None) -> int:
    from benchmarks import scaling
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    results_dir = results_folder(args)
    gate = 'skipped'
    if args.suite and args.gate:
        gate = 'passed: ' + run_gate()
    failed = 0
    for suite in dict.fromkeys(args.suite):
        print(f'== {suite} ==', flush=True)
        meta = metadata(argv, suite=suite, quick=args.quick, gate=gate)
        extra = {}
        if suite == 'accuracy':
            rows, notes = run_accuracy(args)
            extra['notes'] = notes
        elif suite == 'speed':
            rows = run_speed(args)
            meta.update(pair_config())
        elif suite == 'memory':
            rows = run_memory(args)
            meta.update(pair_config())
        else:
            result = scaling.run(
                nodes=args.nodes, degree=args.degree,
                degree_nodes=args.degree_nodes, degrees=args.degrees,
                dense_max_nodes=args.dense_max_nodes, layers=args.layers,
                repeats=args.repeats, chunk_size=args.flash_chunk_size,
                quick=args.quick, timeout=args.timeout, one_child=args.quick)
            rows = result['rows']
            meta['config'] = result['config']
            extra['slopes'] = result['slopes']
            write_csv(results_dir / 'scaling_slopes.csv', meta,
                      result['slopes'])
        write_results(results_dir, suite, meta, rows, **extra)
        failed += sum('error' in r for r in rows)
    if args.notebooks:
        run_notebooks(args, results_dir)
    if args.full_protocol_table:
        print(full_protocol_table(results_dir), end='')
    if failed:
        print(f'{failed} row(s) failed; see their "error" field',
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
