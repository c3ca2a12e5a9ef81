"""Which Python a rule's shell command runs: ``python3 -m <stage>`` (a venv, a conda env and most systems
have that name) finds it on PATH."""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping


def path_with_interpreter(executable: str, path: str) -> str:
    """``path`` with the folder of ``executable`` (the Python running Snakemake) first, so a rule runs the
    stages in the environment that parsed the workflow, activated or not. With ``--use-conda`` the rule's
    environment is activated inside the job and comes first again."""
    folder = os.path.dirname(os.path.abspath(executable))
    rest = [p for p in path.split(os.pathsep) if p and p != folder]
    return os.pathsep.join([folder, *rest])


def use_running_interpreter(environ: MutableMapping[str, str] = os.environ, executable: str = sys.executable) -> None:
    """Put the running interpreter's folder first on ``environ``'s PATH (:func:`path_with_interpreter`)."""
    environ["PATH"] = path_with_interpreter(executable, environ.get("PATH", ""))
