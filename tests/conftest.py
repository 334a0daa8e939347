import os
import shutil
from pathlib import Path

import pytest
import torch

SHARED_DATASETS = Path(__file__).resolve().parents[1] / '..' / 'shared' / 'datasets'


def pytest_collection_modifyitems(config, items):
    if os.environ.get('PYG_ATTN_SLOW') == '1':
        return
    skip = pytest.mark.skip(reason='slow test; set PYG_ATTN_SLOW=1 to run')
    for item in items:
        if 'slow' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def shared_datasets() -> Path:
    r"""The raw datasets: :obj:`PYG_ATTN_DATA` if set, else the project's
    :obj:`../shared/datasets` next to the repository."""
    env = os.environ.get('PYG_ATTN_DATA')
    return Path(env) if env else SHARED_DATASETS


def copy_raw(tmp_path_factory, names) -> str:
    r"""A writable data root holding copies of the raw files of the datasets
    :obj:`names`; skips the test when one is missing."""
    root = tmp_path_factory.mktemp('data')
    for name in names:
        src = shared_datasets() / name / 'raw'
        if not src.is_dir():
            pytest.skip(f'raw {name} files not found in {src.parent.parent}')
        shutil.copytree(src, root / name / 'raw')
        for path in (root / name).rglob('*'):
            path.chmod(path.stat().st_mode | 0o200)
    return str(root)


@pytest.fixture(scope='session')
def planetoid_root(tmp_path_factory) -> str:
    r"""Cora and CiteSeer's raw files, shared by every test of the session."""
    return copy_raw(tmp_path_factory, ['Cora', 'CiteSeer'])


@pytest.fixture(scope='session')
def disease_root(tmp_path_factory) -> str:
    r"""disease_lp's raw files, shared by every test of the session."""
    return copy_raw(tmp_path_factory, ['disease_lp'])


@pytest.fixture(scope='session')
def minesweeper_root(tmp_path_factory) -> str:
    r"""minesweeper's raw file, shared by every test of the session."""
    return copy_raw(tmp_path_factory, ['minesweeper'])


@pytest.fixture
def chunk_steps(monkeypatch):
    r"""``chunk_steps(module)`` spies the ``_ranges`` that :obj:`module`'s
    chunk loops walk and returns the list it fills with their
    ``(rows, rows per chunk)``."""
    def spy_on(module) -> list:
        steps, ranges = [], module._ranges

        def spy(num_rows, step):
            steps.append((num_rows, step))
            return ranges(num_rows, step)

        monkeypatch.setattr(module, '_ranges', spy)
        return steps

    return spy_on


@pytest.fixture
def auxiliary_losses(monkeypatch):
    r"""``auxiliary_losses(script)`` spies the ``with_auxiliary_loss`` that
    :obj:`script`'s training steps call and returns the list it fills with
    each step's :func:`~pyg_attn.compare.auxiliary_loss` of the model."""
    from pyg_attn.compare import auxiliary_loss

    def spy_on(script) -> list:
        losses, total = [], script.with_auxiliary_loss

        def spy(loss, model):
            losses.append(auxiliary_loss(model))
            return total(loss, model)

        monkeypatch.setattr(script, 'with_auxiliary_loss', spy)
        return losses

    return spy_on
