"""The index of the between-workflow cache: which SPICE dataset or surrogate a circuit's provenance names.

``snakemake --cache`` with ``SNAKEMAKE_OUTPUT_CACHE=/shared/folder``: the SPICE-dataset and surrogate rules
store their outputs there, keyed by Snakemake's provenance hash, and another project that would make the
same file fetches it instead. Snakemake still runs the *upstream* jobs of a cached job (the ngspice
shards), so the workflow also keeps an index of what the cache holds by circuit provenance
(``$SNAKEMAKE_OUTPUT_CACHE/xbarchar/{spice,surrogate}-KEY.h5``, links to the cached files, written when a
run succeeds). A circuit whose surrogate is in that index is used like ``surrogate_file``: no SPICE, no
training; a circuit whose SPICE dataset is in it skips ngspice.

The key: the circuit's keys (not its name), the netlist's text, the sampling and surrogate settings, the
rules' commands and the spice/ and surrogate/ package sources (a code change is a new key).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.config import CIRCUIT_STAGE_KEYS
from pipeline.params import dumps

CACHE_INDEX_STAGES = ("spice", "surrogate")
"""The stages whose outputs the index links."""
STAGE_RULES = {"spice": ("spice_shard", "spice_merge"), "surrogate": ("spice_shard", "spice_merge", "surrogate_train")}
"""The rules whose shell commands are part of each stage's key."""
INDEX_FOLDER = "xbarchar"
"""The index's folder inside ``$SNAKEMAKE_OUTPUT_CACHE``."""
CACHE_ENV = "SNAKEMAKE_OUTPUT_CACHE"


def index_folder(cache_in_use: bool, environ: Mapping[str, str] = os.environ) -> Path | None:
    """The index folder when this run uses the between-workflow cache (``--cache``), else None."""
    folder = environ.get(CACHE_ENV)
    return Path(folder) / INDEX_FOLDER if cache_in_use and folder else None


def package_sha256(folder: str | Path) -> str:
    """sha256 over a package's Python sources (names and bytes, sorted by name)."""
    h = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.py"), key=lambda p: p.name):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def provenance_key(config: dict[str, Any], circuit: str, stage: str, code_dir: str | Path,
                   commands: Mapping[str, str]) -> str | None:
    """What a circuit's SPICE dataset (stage ``spice``) or surrogate (``surrogate``) is made from, as a
    sha256; None where it depends on a trained model (``sampling.source_model``). ``code_dir`` holds the
    spice/ and surrogate/ packages; ``commands`` maps each rule of :data:`STAGE_RULES` to its shell command."""
    from spice.circuit import spec_from_config

    if stage not in CACHE_INDEX_STAGES:
        raise ValueError(f"stage = {stage!r}: expected one of {CACHE_INDEX_STAGES}")
    entry = config["circuits"][circuit]
    if entry["sampling"].get("source_model"):
        return None
    keys = {k: v for k, v in entry.items() if k not in CIRCUIT_STAGE_KEYS}
    spec = spec_from_config(circuit, dict(keys))
    what = {"circuit": keys, "netlist_sha256": hashlib.sha256(spec.netlist_text.encode()).hexdigest(),
            "sampling": entry["sampling"], "spice_code": package_sha256(Path(code_dir) / "spice"),
            "commands": [commands[r] for r in STAGE_RULES["spice"]]}
    if stage == "surrogate":
        what.update(surrogate=entry.get("surrogate", {}), surrogate_code=package_sha256(Path(code_dir) / "surrogate"),
                    surrogate_command=commands["surrogate_train"])
    return hashlib.sha256(dumps(what).encode()).hexdigest()


def index_path(folder: Path | None, stage: str, key: str | None) -> Path | None:
    """Where the index links a circuit's dataset or surrogate; None without an index folder or a key."""
    return folder / f"{stage}-{key}.h5" if folder is not None and key else None


def cached_file(index: Path | None) -> str | None:
    """The cached file an index entry links to, when it exists, else None."""
    return os.path.realpath(index) if index is not None and index.exists() else None


def link_into_index(made: str | Path, index: Path | None) -> bool:
    """After a successful run: when Snakemake moved ``made`` into the cache (``made`` is then a link into
    it), link the cached file from ``index`` (atomically; an existing entry is kept). True when linked."""
    if index is None or not os.path.islink(made) or index.exists():
        return False
    index.parent.mkdir(parents=True, exist_ok=True)
    tmp = index.with_name(f"{index.name}.tmp{os.getpid()}")
    os.symlink(os.path.realpath(made), tmp)
    os.replace(tmp, index)
    return True
