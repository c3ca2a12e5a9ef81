"""JSON arguments of the stage CLIs (``--params-json``, ``--circuit``, ...) carry the limits of a config file:
size and UTF-8 before parsing, nesting depth and expanded size after, one line naming the flag."""

from __future__ import annotations

import subprocess
import sys

import pytest

from xbarchar.cli import ArgumentError, load_json_object
from xbarchar.yamlsafe import MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH, MAX_CONFIG_NODES

FLAG = "--params-json"


def refusal(text: str) -> str:
    with pytest.raises(ArgumentError) as err:
        load_json_object(text, FLAG)
    message = str(err.value)
    assert message.startswith(FLAG) and "\n" not in message and len(message) < 600
    return message


def test_a_plain_object_loads_inline_and_from_a_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"epochs": 3}')
    assert load_json_object('{"epochs": 3}', FLAG) == {"epochs": 3}
    assert load_json_object(f"@{path}", FLAG) == {"epochs": 3} == load_json_object(str(path), FLAG)


def test_deep_nesting_is_refused_inline():
    text = '{"a":' * (MAX_CONFIG_DEPTH + 5) + "1" + "}" * (MAX_CONFIG_DEPTH + 5)
    assert "nested deeper" in refusal(text)


def test_nesting_past_the_parser_recursion_limit_is_refused_not_an_internal_error():
    assert "neither a JSON object" in refusal("[" * 200_000 + "]" * 200_000)
    assert "nested deeper" in refusal('{"a":' + "[" * 200_000 + "]" * 200_000 + "}")


def test_an_oversize_file_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "big.json"
    path.write_text('{"a": "' + "x" * (MAX_CONFIG_BYTES + 10) + '"}')
    assert "larger than" in refusal(f"@{path}")


def test_undecodable_bytes_name_the_offset(tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(b'{"a": "\xff"}')
    assert "byte 7 is not UTF-8" in refusal(f"@{path}")


def test_an_object_of_too_many_nodes_is_refused():
    text = '{"a": [' + ",".join(["1"] * (MAX_CONFIG_NODES + 1)) + "]}"
    assert f"more than {MAX_CONFIG_NODES} nodes" in refusal(text)


def test_a_text_too_long_for_a_path_is_not_taken_for_one():
    assert "neither a JSON object" in refusal("x" * 10_000)


def test_the_cli_answers_a_nested_json_argument_in_one_line(tmp_path):
    data = tmp_path / "none.h5"
    data.write_bytes(b"")
    text = '{"epochs":' + "[" * 50_000 + "]" * 50_000 + "}"  # under the 128 KiB limit of one argument
    proc = subprocess.run([sys.executable, "-m", "surrogate", "train", "--data", str(data), "--out",
                           str(tmp_path / "s.h5"), "--params-json", text],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--params-json" in lines[0] and len(lines[0]) < 600, proc.stderr[:2000]
    assert not (tmp_path / "s.h5").exists()
