"""pyg_attn: graph attention layers for PyTorch Geometric."""

__version__ = '0.1.0'

from pyg_attn import functional, nn, testing, transforms  # noqa: E402

__all__ = ['__version__', 'functional', 'nn', 'testing', 'transforms']
