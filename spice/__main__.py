import sys

from spice.cli import main

sys.exit(main())
