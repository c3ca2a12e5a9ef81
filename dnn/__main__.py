"""`python -m dnn ...` entry point."""

from .cli import main

raise SystemExit(main())
