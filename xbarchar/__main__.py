"""`python -m xbarchar ...` entry point (the `xbarchar` console command)."""

import sys

from xbarchar.main import main

sys.exit(main())
