"""Does the ngspice shared library that xbarchar loads have the KLU solver? (``python -m spice.install_check``)

The same check as the apt route's ``scripts/install_ngspice.sh``: the library's version banner says
"Compiled with KLU", so the file itself contains the string ``KLU``. Without KLU, large arrays
simulate ~300x slower (128x128: ~70 s per solve instead of ~0.6 s). The library is the one
``spice/ngspice.py`` loads: ``NGSPICE_LIBRARY_PATH`` (environment variables in it, such as
``$CONDA_PREFIX``, are expanded), else ``libngspice.so.0`` on the loader's search path.

Exit status 0 with KLU, 1 without it (with a warning that says what to do), 2 when no library is found.
"""

from __future__ import annotations

import argparse
import ctypes.util
import os
import subprocess
import sys
from pathlib import Path

DEFAULT_LIBRARY = "libngspice.so.0"


def library_name() -> str:
    """The library ngspice.py loads: NGSPICE_LIBRARY_PATH with variables expanded, or the default name."""
    return os.path.expandvars(os.environ.get("NGSPICE_LIBRARY_PATH", DEFAULT_LIBRARY))


def find_library(name: str | None = None) -> Path | None:
    """The file behind `name`: the path itself when it has a directory, else the loader cache's entry."""
    name = name or library_name()
    if os.sep in name:
        return Path(name) if Path(name).is_file() else None
    try:
        cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        cache = ""
    for line in cache.splitlines():
        if line.strip().startswith(name + " ") and "=>" in line:
            return Path(line.split("=>")[-1].strip())
    found = ctypes.util.find_library(name.removeprefix("lib").split(".so")[0])
    return Path(found) if found and os.sep in found else None


def has_klu(path: str | Path) -> bool:
    """True when the library file contains the string KLU (its banner says 'Compiled with KLU')."""
    return b"KLU" in Path(path).read_bytes()


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
                            ).parse_args(argv)
    path = find_library()
    if path is None:
        print(f"ERROR: ngspice shared library {library_name()!r} not found: install ngspice "
              "(apt: scripts/install_ngspice.sh; conda: environment.yml) or set NGSPICE_LIBRARY_PATH",
              file=sys.stderr)
        return 2
    if has_klu(path):
        print(f"ngspice library {path}: KLU available")
        return 0
    print(f"WARNING: ngspice library {path} has no KLU solver: large arrays simulate ~300x slower "
          "(128x128: ~70 s per solve instead of ~0.6 s). Install an ngspice built with KLU "
          "(Debian: bookworm-backports, scripts/install_ngspice.sh).",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
