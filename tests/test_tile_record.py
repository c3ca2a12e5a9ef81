"""One record of the tile from spice to dnn: `spice.tile.Tile`."""

from __future__ import annotations

import json

import pytest
from torch import nn

from dnn.config import CrossbarConfig
from dnn.evaluate import exact_tile_model, ideal_tile_model, surrogate_tile_model
from dnn.layers import CrossbarLinear
from dnn.mvm import IdealTileMVM, TileMVM
from spice.tile import TILE_KEYS, Tile, TileError
from surrogate.io import load_surrogate, save_surrogate
from surrogate.models import build_model
from surrogate.physics import TileSpec

TILE = Tile(rows=4, cols=3, g_off_s=5e-6, g_on_s=5e-5, v_read_min_v=0.0, v_read_max_v=0.2, r_driver_ohm=100.0,
            r_sense_ohm=100.0, r_wire_row_ohm=5.0, r_wire_col_ohm=2.5)


def test_one_class_under_both_names():
    assert TileSpec is Tile


def test_round_trip_through_json():
    data = json.loads(json.dumps(TILE.to_dict()))
    assert tuple(data) == TILE_KEYS
    assert Tile.from_dict(data) == TILE
    assert TILE.full_scale_a == pytest.approx(5e-5 * 0.2 * 4)


@pytest.mark.parametrize(("change", "message"), [
    ({"rows": 0}, "^tile: rows must be an integer >= 1, got 0$"),
    ({"cols": 2.0}, "^tile: cols must be an integer >= 1, got 2.0$"),
    ({"g_on_s": "5e-5"}, "^tile: g_on_s must be a finite number, got '5e-5'$"),
    ({"g_off_s": 1e-4}, "^tile: g_off_s=0.0001, g_on_s=5e-05 S: expected 0 <= g_off_s < g_on_s$"),
    ({"v_read_max_v": 0.0}, "^tile: v_read_max_v=0.0 V: expected > 0$"),
    ({"v_read_min_v": -0.3}, r"^tile: v_read_min_v=-0.3 V: expected in \[-v_read_max_v, v_read_max_v\)$"),
    ({"r_sense_ohm": -1.0}, "^tile: r_sense_ohm=-1.0 ohm: expected >= 0$"),
    ({"r_wire_col_ohm": float("nan")}, "^tile: r_wire_col_ohm must be a finite number, got nan$"),
])
def test_invalid_values_name_the_key(change, message):
    with pytest.raises(TileError, match=message):
        Tile.from_dict({**TILE.to_dict(), **change})


def test_missing_unknown_and_non_mapping_records_name_the_key():
    data = TILE.to_dict()
    del data["r_driver_ohm"]
    with pytest.raises(TileError, match="^tile: key 'r_driver_ohm' is missing; expected keys"):
        Tile.from_dict(data)
    with pytest.raises(TileError, match="^tile: unknown key 'g_max_s'; expected keys"):
        Tile.from_dict({**TILE.to_dict(), "g_max_s": 5e-5})
    with pytest.raises(TileError, match="^tile: expected a mapping"):
        Tile.from_dict([1, 2])


def test_circuit_surrogate_and_layer_report_the_same_tile(make_spec, tmp_path):
    spec = make_spec(r_wire_col_ohm=2.5)
    assert spec.tile == TILE and Tile.from_circuit(spec) == TILE
    path = tmp_path / "s.h5"
    save_surrogate(path, build_model("ridge", spec.tile), spec, train_params={}, history={}, data_sha256="",
                   data_path="", split={})
    loaded = load_surrogate(path, expect_spec=spec)
    assert isinstance(loaded, TileMVM) and loaded.tile == spec.tile
    assert (loaded.rows, loaded.cols, loaded.g_on_s, loaded.v_read_min_v) == (4, 3, 5e-5, 0.0)  # views of the tile
    layer = CrossbarLinear.from_float(nn.Linear(5, 2), CrossbarConfig(input_polarity="two_phase"), loaded)
    assert layer.mvm.tile == spec.tile
    mvm, info = surrogate_tile_model(path, spec)
    assert info == {"kind": "surrogate", **spec.tile.to_dict(), "path": str(path)}


def test_tile_models_of_the_dnn_stage_hold_a_tile(make_spec):
    spec = make_spec()
    ideal, info = ideal_tile_model(spec.rows, spec.cols, spec.g_off_s, spec.g_on_s, spec.v_read_max_v)
    assert ideal.tile == Tile(rows=4, cols=3, g_off_s=spec.g_off_s, g_on_s=spec.g_on_s, v_read_min_v=-0.2,
                              v_read_max_v=0.2, r_driver_ohm=0.0, r_sense_ohm=0.0, r_wire_row_ohm=0.0,
                              r_wire_col_ohm=0.0)
    assert info == {"kind": "ideal", **ideal.tile.to_dict()} and ideal.rows == 4 and ideal.v_read_min_v == -0.2
    exact, info = exact_tile_model(spec)
    assert exact.tile == Tile(**{**spec.tile.to_dict(), "v_read_min_v": -spec.v_read_max_v})  # either sign
    assert info["kind"] == "exact" and info["r_driver_ohm"] == spec.r_driver_ohm
    assert IdealTileMVM.of(exact.tile).tile == exact.tile
