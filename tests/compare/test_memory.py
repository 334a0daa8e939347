import sys

import pytest
import torch

import pyg_attn.compare.memory as memory_module
from pyg_attn.compare import PeakMemory

linux = pytest.mark.skipif(not sys.platform.startswith('linux'),
                           reason='VmHWM is Linux only')


@linux
def test_peak_memory_counts_a_block():
    with PeakMemory('cpu') as memory:
        x = torch.ones(16 << 20)  # 64 MiB, written
        del x
    assert memory.method == 'VmHWM'
    assert 60 << 20 <= memory.peak <= 200 << 20


@linux
def test_peak_memory_resets_between_blocks():
    with PeakMemory('cpu') as first:
        x = torch.ones(16 << 20)
        del x
    with PeakMemory('cpu') as second:
        y = torch.ones(1 << 10)
        del y
    assert first.peak >= 60 << 20
    assert second.peak < 30 << 20


def test_peak_memory_fallback(monkeypatch):
    monkeypatch.setattr(memory_module, 'proc_peak_supported', lambda: False)
    with PeakMemory('cpu') as memory:
        torch.ones(4)
    assert memory.method is None and memory.peak is None
