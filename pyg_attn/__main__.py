import sys

from pyg_attn.cli import main

sys.exit(main())
