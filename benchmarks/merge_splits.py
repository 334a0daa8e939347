r"""Merges the results of ``examples/heterophilous.py`` run split by split
(``--split-ids``, e.g. on several machines) into one file, as one run over
all those splits would have written it: per-split lists in split order, the
mean and (population) standard deviation of the test ROC AUC, the mean time
per step.

The parts must come from the same dataset, layer and settings: every
argument but ``--split-ids``, ``--splits``, ``--out``, ``--root`` and
``--device`` must agree, and no split may appear twice.  ``parts`` in the
output names each file with its splits and versions.

    python -m benchmarks.merge_splits a.json b.json --out merged.json
"""
import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import List

# arguments that say where or which splits ran, not how
RUN_ARGS = ('split_ids', 'splits', 'out', 'root', 'device')
PER_SPLIT = ('test_auc', 'val_auc', 'best_epochs', 'epoch_times')
REQUIRED = ('dataset', 'conv', 'splits', 'test_auc', 'val_auc', 'best_epochs',
            'epoch_time_mean', 'num_edges', 'graph_time', 'args', 'versions')


def per_split(result: dict, key: str) -> list:
    if key == 'epoch_times' and key not in result:  # files before the key
        return [result['epoch_time_mean']] * len(result['splits'])
    return list(result[key])


def merge(results: List[dict], names: List[str]) -> dict:
    r"""One result over the splits of :obj:`results` (named :obj:`names` in
    messages and in :obj:`parts`).

    Raises:
        ValueError: If the parts differ in dataset, layer or a setting, or
            share a split.
    """
    if not results:
        raise ValueError('nothing to merge: give at least one results file')
    first, first_name = results[0], names[0]
    settings = {k: v for k, v in first['args'].items() if k not in RUN_ARGS}
    seen = {}
    for result, name in zip(results, names):
        missing = [key for key in REQUIRED if key not in result]
        if missing:
            raise ValueError(f"{name} is not a results file of "
                             f"examples/heterophilous.py (it has no "
                             f"{', '.join(missing)})")
    for result, name in zip(results, names):
        for key in ('dataset', 'conv', 'num_edges'):
            if result.get(key) != first.get(key):
                raise ValueError(f'{name} has {key} {result.get(key)!r} but '
                                 f'{first_name} has {first.get(key)!r}; '
                                 f'merge runs of one protocol only')
        other = {k: v for k, v in result['args'].items()
                 if k not in RUN_ARGS}
        for key in sorted(set(settings) | set(other)):
            if settings.get(key) != other.get(key):
                raise ValueError(
                    f'{name} ran with {key}={other.get(key)!r} but '
                    f'{first_name} with {settings.get(key)!r}; merge runs '
                    f'of one protocol only')
        for split in result['splits']:
            if split in seen:
                raise ValueError(f'split {split} is in both {seen[split]} '
                                 f'and {name}; give each split once')
            seen[split] = name

    rows = sorted((split, result, i) for result in results
                  for i, split in enumerate(result['splits']))
    merged = {key: [per_split(result, key)[i] for _, result, i in rows]
              for key in PER_SPLIT}
    aucs = merged['test_auc']
    return dict(
        dataset=first['dataset'], conv=first['conv'],
        splits=[split for split, _, _ in rows], test_auc=aucs,
        mean=statistics.mean(aucs), std=statistics.pstdev(aucs),
        epoch_time_mean=statistics.mean(merged['epoch_times']),
        epoch_times=merged['epoch_times'], num_edges=first['num_edges'],
        graph_time=statistics.mean(r['graph_time'] for r in results),
        val_auc=merged['val_auc'], best_epochs=merged['best_epochs'],
        args=dict(first['args'], splits=len(rows),
                  split_ids=[split for split, _, _ in rows]),
        versions=first['versions'],
        parts=[dict(file=name, splits=result['splits'],
                    versions=result['versions'])
               for result, name in zip(results, names)],
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('files', nargs='+', help='results of '
                        'examples/heterophilous.py, one per run')
    parser.add_argument('--out', required=True, help='the merged JSON')
    args = parser.parse_args(argv)
    try:
        results = []
        for name in args.files:
            try:
                results.append(json.loads(Path(name).read_text()))
            except ValueError as error:  # not JSON
                raise ValueError(f'{name} is not JSON: {error}') from error
        merged = merge(results, args.files)
        merged['args']['out'] = args.out
    except (OSError, ValueError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(merged, indent=2) + '\n')
    print(f"{merged['dataset']} {merged['conv']}: test ROC AUC "
          f"{100 * merged['mean']:.2f} ± {100 * merged['std']:.2f} over "
          f"splits {merged['splits']}; wrote {args.out}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
