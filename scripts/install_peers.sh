#!/usr/bin/env bash
# The peers' environment for bench/peers.py: aihwkit 1.1.0, badcrossbar 1.1.0 and CrossSim, in their own
# virtual environment (default .venv-peers), never in the project's .venv.
#
#   bash scripts/install_peers.sh                          # aihwkit and badcrossbar; CrossSim skipped
#   CROSSSIM_SRC=/path/to/cross-sim bash scripts/install_peers.sh   # and CrossSim from its source tree
#
# - aihwkit 1.1.0's cp311 wheel: its C++ tile works with torch 2.10.0 only. Both are pinned in one pip
#   call, so the resolver picks a torchvision for torch 2.10.0 instead of upgrading torch. If torch ends
#   up at another version anyway, it is put back with --no-deps.
# - badcrossbar 1.1.0 without its dependencies (its plotting half pulls in cairo), plus what
#   badcrossbar.compute imports: numpy, scipy, pathvalidate.
# - CrossSim is not a registry package: give a checkout of Sandia's cross-sim repository (3.2.0 was
#   measured) in CROSSSIM_SRC; without it CrossSim is skipped and the bench reports it as missing.
set -euo pipefail
VENV="${PEERS_VENV:-.venv-peers}"
PYTHON="${PEERS_PYTHON:-python3.11}"
AIHWKIT_VERSION=1.1.0
TORCH_FOR_AIHWKIT=2.10.0
BADCROSSBAR_VERSION=1.1.0

if ! command -v "$PYTHON" >/dev/null; then
  echo "install_peers: $PYTHON not found; aihwkit $AIHWKIT_VERSION ships a cp311 wheel, so the peers need Python 3.11" >&2
  echo "               (set PEERS_PYTHON to a Python 3.11 interpreter)" >&2
  exit 1
fi
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/pip"
"$PIP" install -q --upgrade pip
"$PIP" install -q "aihwkit==$AIHWKIT_VERSION" "torch==$TORCH_FOR_AIHWKIT"
if [ "$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')" != "$TORCH_FOR_AIHWKIT" ]; then
  "$PIP" install -q --no-deps "torch==$TORCH_FOR_AIHWKIT"
fi
"$PIP" install -q --no-deps "badcrossbar==$BADCROSSBAR_VERSION"
"$PIP" install -q numpy scipy pathvalidate threadpoolctl
if [ -n "${CROSSSIM_SRC:-}" ]; then
  if [ ! -f "$CROSSSIM_SRC/pyproject.toml" ] || [ ! -d "$CROSSSIM_SRC/simulator" ]; then
    echo "install_peers: CROSSSIM_SRC=$CROSSSIM_SRC is not a cross-sim source tree (no pyproject.toml and simulator/)" >&2
    exit 1
  fi
  "$PIP" install -q "$CROSSSIM_SRC"
else
  echo "install_peers: CrossSim skipped (not a registry package): set CROSSSIM_SRC to a checkout of Sandia's cross-sim"
fi
"$VENV/bin/python" - <<'PY'
from importlib.metadata import version, PackageNotFoundError
for name in ("aihwkit", "torch", "badcrossbar", "CrossSim"):
    try:
        print(f"  {name} {version(name)}")
    except PackageNotFoundError:
        print(f"  {name}: not installed")
PY
