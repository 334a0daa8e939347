r"""Peak memory of a block of work, measured in the running process.

- CUDA devices: :func:`torch.cuda.max_memory_allocated` after
  :func:`torch.cuda.reset_peak_memory_stats`, above the memory allocated at
  the start (tensors only, not the caching allocator's reserve).
- CPU on Linux: the resident set's high-water mark.  Writing :obj:`5` to
  :obj:`/proc/self/clear_refs` resets :obj:`VmHWM` to the current resident
  set :obj:`VmRSS`; the peak is :obj:`VmHWM` at the end minus :obj:`VmRSS` at
  the start (as :mod:`benchmarks.layers` measures, but in-process).  Freed
  heap memory is handed back first (:obj:`malloc_trim` on glibc), so memory
  an earlier block freed is not counted as free capacity of this one.  It
  counts everything the process touched: tensors, allocator slack, Python
  objects.
- Elsewhere (macOS, Windows, or :obj:`/proc` not writable): not measured
  (:obj:`None`); the high-water mark those systems offer cannot be reset.
"""
import ctypes
import ctypes.util
import gc
from pathlib import Path
from typing import Optional, Union

import torch

CLEAR_REFS = Path('/proc/self/clear_refs')
STATUS = Path('/proc/self/status')


def _status_kib(field: str) -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith(field + ':'):
            return int(line.split()[1])
    raise OSError(f'{field} not in {STATUS}')


def _malloc_trim() -> None:
    name = ctypes.util.find_library('c')
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc
        pass


def proc_peak_supported() -> bool:
    r"""Whether this process can reset and read its resident high-water
    mark (Linux :obj:`/proc`)."""
    try:
        CLEAR_REFS.write_text('5')
        _status_kib('VmHWM')
    except OSError:
        return False
    return True


class PeakMemory:
    r"""Context manager measuring the peak memory of its block above the
    memory in use when it is entered, in bytes (:attr:`peak`, :obj:`None`
    where it cannot be measured; see the module docstring for how).

    Args:
        device (str or torch.device): The device the work runs on.

    Example:
        >>> with PeakMemory('cpu') as memory:
        ...     x = torch.ones(1 << 20)
        >>> memory.method, memory.peak >= 4 << 20
        ('VmHWM', True)
    """
    def __init__(self, device: Union[str, torch.device] = 'cpu'):
        self.device = torch.device(device)
        self.method: Optional[str] = None
        self.peak: Optional[int] = None
        self._base = 0

    def __enter__(self) -> 'PeakMemory':
        gc.collect()
        if self.device.type == 'cuda':
            self.method = 'cuda'
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        elif proc_peak_supported():
            self.method = 'VmHWM'
            _malloc_trim()
            CLEAR_REFS.write_text('5')  # VmHWM := VmRSS
            self._base = _status_kib('VmRSS') * 1024
        return self

    def __exit__(self, *exc) -> None:
        if self.method == 'cuda':
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - \
                self._base
        elif self.method == 'VmHWM':
            self.peak = max(_status_kib('VmHWM') * 1024 - self._base, 0)
