"""``benchmarks.merge_splits``: runs of ``examples/heterophilous.py`` split
by split, merged, equal one run over the same splits."""
import importlib
import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def runs(minesweeper_root, tmp_path_factory):
    spec = importlib.util.spec_from_file_location(
        'heterophilous', ROOT / 'examples' / 'heterophilous.py')
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    folder = tmp_path_factory.mktemp('runs')
    common = ['--conv', 'edge_gat', '--epochs', '2', '--hidden', '8',
              '--heads', '2', '--layers', '1', '--root', minesweeper_root]
    for name, splits in (('all', ['--splits', '3']),
                         ('a', ['--split-ids', '2']),
                         ('b', ['--split-ids', '0', '1']),
                         ('lr', ['--split-ids', '1', '--lr', '1e-3'])):
        assert script.main([*common, *splits,
                            '--out', str(folder / f'{name}.json')]) == 0
    return folder


@pytest.fixture
def merge_splits(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module('benchmarks.merge_splits')


def load(path):
    return json.loads(Path(path).read_text())


def test_merge_equals_one_run(runs, merge_splits, tmp_path, capsys):
    out = tmp_path / 'merged.json'
    assert merge_splits.main([str(runs / 'a.json'), str(runs / 'b.json'),
                              '--out', str(out)]) == 0
    assert 'over splits [0, 1, 2]' in capsys.readouterr().out
    merged, whole = load(out), load(runs / 'all.json')
    for key in ('dataset', 'conv', 'splits', 'test_auc', 'val_auc',
                'best_epochs', 'num_edges'):
        assert merged[key] == whole[key], key
    assert merged['mean'] == pytest.approx(whole['mean'], abs=1e-12)
    assert merged['std'] == pytest.approx(whole['std'], abs=1e-12)
    assert merged['std'] > 0
    assert merged['args']['split_ids'] == [0, 1, 2]
    assert merged['args']['splits'] == 3
    assert merged['args']['out'] == str(out)
    assert [part['splits'] for part in merged['parts']] == [[2], [0, 1]]
    times = load(runs / 'a.json')['epoch_times'] + load(
        runs / 'b.json')['epoch_times']
    assert merged['epoch_time_mean'] == pytest.approx(sum(times) / 3)


def test_merge_refuses_mixed_runs(runs, merge_splits, tmp_path, capsys):
    out = tmp_path / 'merged.json'
    cases = [
        ([runs / 'all.json', runs / 'a.json'], 'split 2 is in both'),
        ([runs / 'a.json', runs / 'lr.json'], r"ran with lr=0\.001 but"),
    ]
    for files, match in cases:
        with pytest.raises(ValueError, match=match):
            merge_splits.merge([load(f) for f in files],
                               [str(f) for f in files])
    (tmp_path / 'other.json').write_text('{"dataset": "minesweeper"}')
    (tmp_path / 'broken.json').write_text('{')
    for name, match in (('other.json', 'not a results file.*no conv'),
                        ('broken.json', 'broken.json is not JSON')):
        assert merge_splits.main([str(runs / 'a.json'), str(tmp_path / name),
                                  '--out', str(out)]) == 1
        err = capsys.readouterr().err
        assert 'Traceback' not in err
        assert re.search(match, err), err
    assert not out.exists()
