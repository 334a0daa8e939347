r"""The comparison table as text, CSV, JSON and a bar chart."""
import csv
import json
import os
from typing import Any, Dict, List, Optional

CSV_FIELDS = ['mechanism', 'layer', 'origin', 'accuracy_mean', 'accuracy_std',
              'epoch_ms', 'peak_mib', 'parameters', 'num_edges', 'seeds',
              'mean_epochs', 'note']


def _mib(value: Optional[float]) -> str:
    return 'n/a' if value is None else f'{value:.0f}'


def format_table(rows: List[Dict[str, Any]], title: str = '') -> str:
    r"""An aligned text table (one line per mechanism) followed by the
    notes."""
    header = ['mechanism', 'layer', 'accuracy (%)', 'ms/epoch', 'peak MiB',
              'parameters']
    lines = [[
        row['mechanism'] + (' *' if row['origin'] != 'pyg_attn' else ''),
        row['layer'],
        f"{100 * row['accuracy_mean']:.2f} ± {100 * row['accuracy_std']:.2f}",
        f"{row['epoch_ms']:.0f}",
        _mib(row['peak_mib']),
        f"{row['parameters']:,}",
    ] for row in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines)]
    right = {2, 3, 4, 5}

    def fmt(cells):
        return '  '.join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    out = [title] if title else []
    out += [fmt(header), '  '.join('-' * w for w in widths)]
    out += [fmt(cells) for cells in lines]
    methods = {row.get('memory_method') for row in rows} - {None}
    memory = {'VmHWM': 'peak resident memory above the start of training',
              'cuda': 'peak CUDA tensor memory above the start of training'}
    out.append('* PyG baseline.  accuracy: test accuracy at the best '
               'validation epoch, mean ± std over seeds; ms/epoch: one '
               'training step and one evaluation; peak MiB: ' + (
                   ' / '.join(memory[m] for m in sorted(methods))
                   or 'not measured on this system') +
               '; parameters: those trained.')
    out += [f"{row['mechanism']}: {row['note']}" for row in rows
            if row['note']]
    return '\n'.join(out)


def write_csv(rows: List[Dict[str, Any]], path: str) -> None:
    r"""One line per mechanism, the columns of :obj:`CSV_FIELDS`."""
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow(dict(
                {k: row[k] for k in CSV_FIELDS if k in row},
                seeds=len(row['accuracies']),
                mean_epochs=sum(row['epochs']) / len(row['epochs'])))


def write_json(results: Dict[str, Any], path: str) -> None:
    r"""Writes :obj:`results` to :obj:`path` as indented JSON, creating the
    folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(results, f, indent=2)


def plot(rows: List[Dict[str, Any]], path: str, title: str = '') -> bool:
    r"""Bar charts of accuracy (± std), time per epoch and peak memory, one
    bar per mechanism, PyG's baselines in grey.  Returns :obj:`False`
    without writing when matplotlib (the :obj:`bench` extra) is missing."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError:
        return False
    names = [row['mechanism'] for row in rows]
    colors = ['tab:gray' if row['origin'] != 'pyg_attn' else 'tab:blue'
              for row in rows]
    panels = [
        ('test accuracy (%)', [100 * r['accuracy_mean'] for r in rows],
         [100 * r['accuracy_std'] for r in rows]),
        ('time per epoch (ms)', [r['epoch_ms'] for r in rows], None),
        ('peak memory (MiB)', [r['peak_mib'] or 0.0 for r in rows], None),
    ]
    fig = Figure(figsize=(max(6.0, 0.55 * len(rows)), 9.0),
                 layout='constrained')
    axes = fig.subplots(3, 1, sharex=True)
    for ax, (label, values, errors) in zip(axes, panels):
        ax.bar(names, values, yerr=errors, color=colors, capsize=3)
        ax.set_ylabel(label)
        ax.grid(axis='y', alpha=0.3)
    axes[0].legend(handles=[Patch(color='tab:blue', label='pyg_attn'),
                            Patch(color='tab:gray', label='PyG baseline')],
                   loc='lower left')
    accs = panels[0][1]
    axes[0].set_ylim(max(0.0, min(accs) - 10), min(100.0, max(accs) + 5))
    axes[-1].tick_params(axis='x', labelrotation=45)
    for tick in axes[-1].get_xticklabels():
        tick.set_horizontalalignment('right')
    if title:
        fig.suptitle(title)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    return True
