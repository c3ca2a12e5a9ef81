"""pipeline.cache and pipeline.cluster, called directly: provenance keys, the cache index, the SLURM check."""

from __future__ import annotations

import copy
import os
import shutil

import pytest
import yaml
from snakemake.utils import validate

from pipeline import cache, cluster
from tests.conftest import REPO

COMMANDS = {"spice_shard": "shard cmd", "spice_merge": "merge cmd", "surrogate_train": "train cmd"}


@pytest.fixture
def config(monkeypatch) -> dict:
    """config/test.yaml, defaults filled; netlist paths resolve against the checkout (the workdir)."""
    monkeypatch.chdir(REPO)
    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    validate(cfg, str(REPO / "config" / "schema.yaml"))
    return cfg


def key(config, stage="surrogate", code_dir=REPO, commands=COMMANDS, circuit="tiny"):
    return cache.provenance_key(config, circuit, stage, code_dir, commands)


def test_the_key_follows_what_the_file_is_made_from_not_the_circuit_name(config):
    base = key(config)
    assert len(base) == 64 and base != key(config, "spice")
    config["circuits"]["renamed"] = copy.deepcopy(config["circuits"]["tiny"])
    assert key(config, circuit="renamed") == base
    for change in ({"r_wire_row_ohm": 6}, {"sampling": {**config["circuits"]["tiny"]["sampling"], "seed": 9}}):
        changed = copy.deepcopy(config)
        changed["circuits"]["tiny"].update(change)
        assert key(changed) != base and key(changed, "spice") != key(config, "spice")


def test_surrogate_settings_and_training_command_change_only_the_surrogate_key(config):
    changed = copy.deepcopy(config)
    changed["circuits"]["tiny"]["surrogate"]["epochs"] = 21
    assert key(changed) != key(config) and key(changed, "spice") == key(config, "spice")
    commands = {**COMMANDS, "surrogate_train": "other"}
    assert key(config, commands=commands) != key(config)
    assert key(config, "spice", commands=commands) == key(config, "spice")
    commands = {**COMMANDS, "spice_merge": "other"}
    assert key(config, commands=commands) != key(config) and key(config, "spice", commands=commands) != key(config, "spice")


def test_a_code_change_is_a_new_key(config, tmp_path):
    for package in ("spice", "surrogate"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    assert key(config, code_dir=tmp_path) == key(config)
    (tmp_path / "surrogate" / "extra.py").write_text("X = 1\n")
    assert key(config, code_dir=tmp_path) != key(config)
    assert key(config, "spice", code_dir=tmp_path) == key(config, "spice")  # surrogate code: not in the dataset key
    (tmp_path / "spice" / "extra.py").write_text("X = 1\n")
    assert key(config, "spice", code_dir=tmp_path) != key(config, "spice")


def test_a_dataset_drawn_from_a_trained_model_has_no_key(config):
    config["circuits"]["tiny"]["sampling"]["source_model"] = "digits_cnn"
    assert key(config) is None and key(config, "spice") is None


def test_an_unknown_stage_is_refused(config):
    with pytest.raises(ValueError, match="stage = 'eval'"):
        key(config, "eval")


def test_the_index_exists_only_with_cache_and_its_folder(tmp_path):
    env = {cache.CACHE_ENV: str(tmp_path)}
    assert cache.index_folder(True, env) == tmp_path / cache.INDEX_FOLDER
    assert cache.index_folder(False, env) is None and cache.index_folder(True, {}) is None
    assert cache.index_path(None, "spice", "abc") is None
    assert cache.index_path(tmp_path, "spice", None) is None
    assert cache.index_path(tmp_path, "spice", "abc") == tmp_path / "spice-abc.h5"


def test_a_cached_output_is_linked_from_the_index_once(tmp_path):
    stored = tmp_path / "cache" / "hash123"
    stored.parent.mkdir()
    stored.write_bytes(b"data")
    made = tmp_path / "results" / "tiny.h5"
    made.parent.mkdir()
    index = tmp_path / "cache" / cache.INDEX_FOLDER / "surrogate-k.h5"
    assert cache.cached_file(index) is None
    made.write_bytes(b"not moved into the cache")
    assert not cache.link_into_index(made, index) and not index.exists()  # a plain file: not cached
    made.unlink()
    made.symlink_to(stored)
    assert cache.link_into_index(made, index)
    assert cache.cached_file(index) == os.path.realpath(stored)
    assert not cache.link_into_index(made, index)  # an existing entry is kept
    assert not cache.link_into_index(made, None)
    assert [p.name for p in index.parent.iterdir()] == [index.name]  # no temporary left behind


def test_the_cluster_check_runs_only_for_slurm_executors(monkeypatch):
    calls = []

    class FakeCheck:
        @staticmethod
        def slurm_problems(partitions, accounts, status_command):
            calls.append((partitions, accounts, status_command))
            return [f"partition {p} unknown" for p in sorted(partitions)]

    monkeypatch.setitem(cluster.sys.modules, cluster.CHECK_MODULE, FakeCheck)
    jobs = [{"slurm_partition": "gpu", "slurm_account": "lab"}, {"slurm_partition": "cpu"}, {}]
    assert cluster.cluster_problems("local", jobs, "sacct", REPO) == [] and calls == []
    got = cluster.cluster_problems("slurm-bounded", jobs, "sacct", REPO)
    assert got == ["partition cpu unknown", "partition gpu unknown"]
    assert calls == [({"gpu", "cpu"}, {"lab"}, "sacct")]


def test_the_cluster_check_module_is_the_scripts_one():
    module = cluster.cluster_check_module(REPO)
    assert callable(module.slurm_problems) and module.__file__ == str(REPO / "scripts" / "cluster_check.py")
