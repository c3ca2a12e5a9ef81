"""Hostile configs: nested-alias bombs, oversize files, wrong types, sizes whose memory is out of reach.

Each is refused before any job runs with one short message naming the file or the key.
"""

from __future__ import annotations

import copy
import math

import pytest
import yaml

from pipeline.config import MAX_MESSAGE_CHARS, ConfigError, check_schema, check_sources, validate_config
from tests.conftest import REPO
from xbarchar.yamlsafe import (
    MAX_CONFIG_BYTES,
    MAX_CONFIG_DEPTH,
    MAX_REPR_CHARS,
    ConfigTreeError,
    check_tree,
    load_config_file,
    short_repr,
)

TEST_CONFIG = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
SCHEMA = REPO / "config" / "schema.yaml"
MESSAGE_CHARS = 400
"""No config error message is longer than this (values are cut to MAX_REPR_CHARS)."""


def bomb_text(levels: int, width: int = 10, mapping: bool = False) -> str:
    """A YAML "billion laughs": ``levels`` anchors, each ``width`` aliases of the one before."""
    def node(inner: str) -> str:
        if mapping:
            return "{" + ", ".join(f"k{j}: {inner}" for j in range(width)) + "}"
        return "[" + ", ".join([inner] * width) + "]"

    lines = [f"a0: &a0 {node('lol')}"]
    lines += [f"a{i}: &a{i} {node(f'*a{i - 1}')}" for i in range(1, levels)]
    lines.append(f"circuits: {{tiny: {{rows: *a{levels - 1}}}}}")
    return "\n".join(lines) + "\n"


def with_value(path: str, value) -> dict:
    """The test config with ``value`` at the dotted ``path``."""
    config = copy.deepcopy(TEST_CONFIG)
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return config


# ------------------------------------------------------------------ bombs and oversize files
@pytest.mark.parametrize("mapping", [False, True], ids=["lists", "mappings"])
def test_a_nested_alias_bomb_file_is_refused_naming_the_file(tmp_path, mapping):
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb_text(12, mapping=mapping))  # 10^12 nodes once expanded
    with pytest.raises(ConfigTreeError, match=r"config file .*bomb\.yaml: config\.a\d+ expands to more than "
                                              r"100000 nodes") as info:
        load_config_file(path)
    assert len(str(info.value)) < MESSAGE_CHARS
    with pytest.raises(ConfigError, match=r"bomb\.yaml"):
        check_sources({}, [path], REPO / "config" / "config.yaml")


def test_a_loaded_bomb_is_measured_without_expanding_it():
    tree = yaml.safe_load(bomb_text(30))  # 10^30 nodes: only a walk by identity can finish
    with pytest.raises(ConfigTreeError, match="expands to more than"):
        check_tree(tree, "config")
    with pytest.raises(ConfigError, match=r"config: config\.a\d+ expands to more than"):
        validate_config(tree)
    assert len(short_repr(tree)) <= MAX_REPR_CHARS
    assert short_repr(tree).startswith("{'a0': ['lol', 'lol'")


def test_shared_nodes_count_once_per_use_and_small_shared_trees_pass():
    leaf = [1, 2, 3]
    assert check_tree({"a": leaf, "b": leaf}, "t") == 1 + 2 * 4
    assert check_tree({"a": leaf, "b": leaf}, "t", max_nodes=8 + 1) == 9
    with pytest.raises(ConfigTreeError, match="more than 8 nodes"):
        check_tree({"a": leaf, "b": leaf}, "t", max_nodes=8)


def test_a_recursive_alias_a_deep_tree_and_odd_keys_are_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("a: &a [1, *a]\n")
    with pytest.raises(ConfigTreeError, match=r"loop\.yaml: config\.a\[1\] contains itself"):
        load_config_file(path)
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * (MAX_CONFIG_DEPTH + 5) + "]" * (MAX_CONFIG_DEPTH + 5) + "\n")
    with pytest.raises(ConfigTreeError, match=rf"deep\.yaml: .* nested deeper than {MAX_CONFIG_DEPTH} levels"):
        load_config_file(deep)
    keys = tmp_path / "keys.yaml"
    keys.write_text("circuits: {1: {rows: 4}}\n")
    with pytest.raises(ConfigTreeError, match=r"keys\.yaml: config\.circuits has the key 1; expected a string"):
        load_config_file(keys)
    keys.write_text(f"circuits: {{{'x' * 500}: {{rows: 4}}}}\n")
    with pytest.raises(ConfigTreeError, match=r"expected a string of at most 100 characters") as info:
        load_config_file(keys)
    assert len(str(info.value)) < MESSAGE_CHARS


def test_an_oversize_or_binary_config_file_is_refused_before_it_is_parsed(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * (MAX_CONFIG_BYTES // 10) + "results_dir: r\n")
    with pytest.raises(ConfigTreeError, match=rf"config file .*big\.yaml: larger than {MAX_CONFIG_BYTES} bytes"):
        load_config_file(big)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"results_dir: \xff\xfe\n")
    with pytest.raises(ConfigTreeError, match=r"bin\.yaml: byte 13 is not UTF-8"):
        load_config_file(binary)
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text("results_dir: !!python/name:os.system\n")  # Snakemake's own loader accepts this tag
    with pytest.raises(ConfigTreeError, match=r"tagged\.yaml, line 1: not valid YAML \(could not determine a "
                                              r"constructor for the tag"):
        load_config_file(tagged)
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(ConfigTreeError, match=r"broken\.yaml, line \d+: not valid YAML"):
        load_config_file(broken)


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "config").glob("*.yaml")))
def test_every_shipped_config_file_is_within_the_bounds(name):
    assert check_tree(load_config_file(REPO / "config" / name), name) < 10_000


# ------------------------------------------------------------------ wrong types, before any simulation
@pytest.mark.parametrize("path, value, message", [
    ("circuits.tiny.rows", True, r"circuits\.tiny.*rows must be an integer in \[1, 1024\], got True"),
    ("circuits.tiny.cols", "16", r"circuits\.tiny.*cols must be an integer .*got '16'"),
    ("circuits.tiny.rows", 16.0, r"circuits\.tiny.*rows must be an integer"),
    ("circuits.tiny.g_on_s", True, r"circuits\.tiny.*g_on_s must be a number"),
    ("circuits.tiny.r_wire_row_ohm", math.inf, r"circuits\.tiny.*r_wire_row_ohm must be a number .*got inf"),
    ("circuits.tiny.v_read_max_v", math.nan, r"circuits\.tiny.*v_read_max_v must be in"),
    ("circuits.tiny.preset", ["a"], r"circuits\.tiny\.preset: unknown preset \['a'\]"),
    ("circuits.tiny.netlist", 5, r"circuits\.tiny\.netlist = 5: expected the path"),
    ("circuits.tiny.sampling.n_vectors", True, r"circuits\.tiny\.sampling\.n_vectors: expected an integer"),
    ("circuits.tiny.sampling.n_conductance", True, r"circuits\.tiny\.sampling\.n_conductance: expected an integer"),
    ("circuits.tiny.sampling.n_shards", True, r"circuits\.tiny\.sampling\.n_shards: expected an integer"),
    ("circuits.tiny.sampling.g_levels", True, r"circuits\.tiny\.sampling\.g_levels: expected 0"),
    ("circuits.tiny.sampling.v_zero_fraction", "0.3", r"sampling\.v_zero_fraction: expected a number in \[0, 1\)"),
    ("circuits.tiny.sampling.mix_fraction", math.nan, r"sampling\.mix_fraction: expected a number in \[0, 1\]"),
    ("circuits.tiny.sampling.source_file", 3, r"sampling\.source_file: expected a path"),
    ("circuits.tiny.sampling", [1, 2], r"circuits\.tiny\.sampling = \[1, 2\]: expected a mapping"),
    ("circuits.tiny.surrogate.val_fraction", "0.1", r"surrogate.*val_fraction='0\.1': expected a number"),
    ("circuits.tiny.surrogate.lr", math.inf, r"surrogate.*lr=inf: expected null .*finite number"),
    ("circuits.tiny.surrogate.v_order", True, r"surrogate.*v_order=True: expected 'auto', 1 or 3"),
    ("circuits.tiny.surrogate.epochs", True, r"surrogate.*epochs=True: expected an integer"),
    ("circuits.tiny.surrogate", "fast", r"circuits\.tiny\.surrogate = 'fast': expected a mapping"),
    ("circuits.tiny.surrogate_file", 7, r"circuits\.tiny\.surrogate_file = 7: expected the path"),
    ("circuits.tiny", "tiny.cir", r"circuits\.tiny = 'tiny\.cir': expected a mapping"),
    ("models.digits_cnn.epochs", True, r"models\.digits_cnn\.epochs = True: expected an integer"),
    ("models.digits_cnn.lr", math.inf, r"models\.digits_cnn\.lr = inf: expected a number > 0"),
    ("models.digits_cnn.batch_size", 10**12, r"models\.digits_cnn\.batch_size = 1000000000000: expected"),
    ("models.digits_cnn.dataset", ["digits"], r"models\.digits_cnn\.dataset = \['digits'\]: expected one of"),
    ("evaluation.eval_draws", True, r"evaluation\.eval_draws = True"),
    ("evaluation.methods", "none", r"evaluation\.methods = 'none': expected a non-empty list"),
    ("evaluation.seeds", 0, r"evaluation\.seeds = 0: expected a non-empty list"),
    ("evaluation.bn_finetune.lr", math.nan, r"evaluation\.bn_finetune\.lr = nan"),
    ("crossbar.read_noise_sigma", True, r"CrossbarConfig\.read_noise_sigma = True"),
    ("crossbar.exclude", 5, r"CrossbarConfig\.exclude = 5: expected a list"),
    ("scenarios.bad", [1], r"scenarios\.bad = \[1\]: expected a mapping"),
    ("scenarios.bad", {"circuits": [["tiny"]]}, r"scenarios\.bad\.circuits = \[\['tiny'\]\]: expected a list"),
    ("scenarios.bad", {"device_preset": ["rram"]}, r"scenarios\.bad\.device_preset: unknown preset \['rram'\]"),
    ("report.fail_drop_points", True, r"report\.fail_drop_points = True: expected a number"),
    ("limits.memory_gb", True, r"limits\.memory_gb = True: expected a number of GB"),
    ("limits.memory_gb", "lots", r"limits\.memory_gb = 'lots'"),
    ("models", ["digits_cnn"], r"models = \['digits_cnn'\]: expected a mapping"),
])
def test_wrong_types_are_refused_naming_the_key(path, value, message):
    with pytest.raises(ConfigError, match=message) as info:
        validate_config(with_value(path, value))
    assert len(str(info.value)) < MESSAGE_CHARS


@pytest.mark.parametrize("path", ["circuits.tiny.rows", "circuits.tiny.sampling.seed", "models.digits_cnn.lr",
                                  "circuits.tiny.surrogate.seed", "evaluation.seeds", "crossbar.seed",
                                  "circuits.tiny.sampling.w_scale_range", "circuits.tiny.netlist",
                                  "scenarios.parasitics.device_preset"])
def test_a_large_wrong_value_gives_a_short_message(path):
    huge = [["x" * 90] * 10] * 5000  # within the tree bound, but its repr is megabytes
    with pytest.raises(ConfigError) as info:
        validate_config(with_value(path, huge))
    assert len(str(info.value)) < MESSAGE_CHARS, str(info.value)[:MESSAGE_CHARS]
    assert path.split(".")[-1] in str(info.value)


def test_the_schema_refuses_booleans_for_integers_with_a_short_message():
    with pytest.raises(ConfigError, match=r"^circuits\.tiny\.rows: True is not of type 'integer'"):
        check_schema(with_value("circuits.tiny.rows", True), SCHEMA)
    with pytest.raises(ConfigError, match=r"^circuits\.tiny\.sampling\.n_vectors: True is not of type 'integer'"):
        check_schema(with_value("circuits.tiny.sampling.n_vectors", True), SCHEMA)
    with pytest.raises(ConfigError, match=r"^circuits\.tiny\.sampling\.mix_fraction: '0\.5' is not of type"):
        check_schema(with_value("circuits.tiny.sampling.mix_fraction", "0.5"), SCHEMA)
    with pytest.raises(ConfigError, match=r"^circuits\.tiny\.rows: ") as info:
        check_schema(with_value("circuits.tiny.rows", [list(range(100))] * 1000), SCHEMA)
    assert len(str(info.value)) < MESSAGE_CHARS
    check_schema(copy.deepcopy(TEST_CONFIG), SCHEMA)


# ------------------------------------------------------------------ memory estimates
def test_an_array_whose_ngspice_memory_is_out_of_reach_names_the_limit():
    config = with_value("circuits.tiny.rows", 1024)
    config["circuits"]["tiny"]["cols"] = 1024
    with pytest.raises(ConfigError, match=r"circuits\.tiny\.rows: a 1024x1024 array needs about 26\.2 GB in ngspice "
                                          r"\(25 kB per cell\), above limits\.memory_gb = 16; raise limits\.memory_gb"):
        validate_config(config)
    config["limits"] = {"memory_gb": 64}
    validate_config(config)  # the setting raises the limit


def test_a_dataset_whose_memory_is_out_of_reach_names_the_limit():
    config = with_value("circuits.tiny.sampling.n_conductance", 1_000_000)
    config["circuits"]["tiny"]["sampling"]["n_vectors"] = 100_000
    with pytest.raises(ConfigError, match=r"circuits\.tiny\.sampling\.n_conductance: 1000000 matrices x 100000 vectors "
                                          r"of a 16x16 array need about 2\.05e\+05 GB as float64 samples, above "
                                          r"limits\.memory_gb = 16"):
        validate_config(config)
    config["circuits"]["tiny"]["sampling"]["n_conductance"] = 40
    validate_config(config)  # 40 x 100000 x 256 x 8 B = 8.2 GB: within the default


@pytest.mark.parametrize("key", ["netlist", "surrogate_file"])
def test_a_long_path_is_refused_with_a_short_message(key):
    with pytest.raises(ConfigError, match=rf"^circuits\.tiny\.{key} = 'missing/.*: expected the path") as info:
        validate_config(with_value(f"circuits.tiny.{key}", "missing/" * 10_000 + "x.cir"))
    assert len(str(info.value)) < MESSAGE_CHARS


def test_an_unreadable_path_is_named_and_any_message_is_cut(tmp_path):
    name = "d" * 300  # one component longer than a file system allows
    with pytest.raises(ConfigError, match=r"^circuits\.tiny(\.netlist = | ).*d{10}"):
        validate_config(with_value("circuits.tiny.netlist", f"{tmp_path}/{name}/x.cir"))
    long_dir = tmp_path.joinpath(*["e" * 200] * 4)
    with pytest.raises(ConfigError, match=r"^circuits\.tiny: circuit file .*eeee\.\.\.$") as info:
        validate_config(with_value("circuits.tiny.netlist", str(long_dir / "x.cir")))
    assert len(str(info.value)) <= MAX_MESSAGE_CHARS
