"""The report's uncertainty over seeds: each statement's t-interval and its "inconclusive" verdict when a
threshold lies inside it, and the warnings (a method above software, a method below its starting point),
on synthetic evaluation files whose intervals are computed here by hand."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from dnn.cli import main
from dnn.report import (
    BELOW_START_CAUSE,
    UNDERTRAINED_CAUSE,
    Interval,
    ReportSettings,
    find_warnings,
    load_results,
    markdown_table,
    seed_interval,
    shape_check,
    starting_point,
)
from tests.test_dnn_report import _result

T3_975 = 3.182446305284263
"""Student-t 0.975 quantile, 3 degrees of freedom (tables: 3.182)."""


def _close(checks):
    return next(c for c in checks if c.text.startswith("BN fine-tuning is close"))


def test_seed_interval_is_the_student_t_interval_with_a_floor():
    values = [1.0, 2.0, 4.0, 5.0]  # mean 3, sample sd sqrt(10/3)
    half = T3_975 * math.sqrt(10 / 3) / 2
    i = seed_interval(values, ReportSettings())
    assert (i.estimate, i.n_seeds) == (3.0, 4)
    assert i.low == pytest.approx(3 - half, rel=1e-12) and i.high == pytest.approx(3 + half, rel=1e-12)
    wide = seed_interval(values, ReportSettings(min_half_width_points=5.0))
    assert (wide.low, wide.high) == (-2.0, 8.0)  # the floor wins over the t half-width (2.91)
    one = seed_interval([2.0], ReportSettings(min_half_width_points=0.5))
    assert (one.low, one.high, one.n_seeds) == (1.5, 2.5, 1)  # one seed: the floor alone
    ninety = seed_interval(values, ReportSettings(confidence=0.9))  # t(0.95, 3) = 2.353
    assert ninety.high - 3 == pytest.approx(2.353363 * math.sqrt(10 / 3) / 2, rel=1e-6)
    assert i.side(i.high + 1e-9) == -1 and i.side(i.low - 1e-9) == 1 and i.side(i.high) == i.side(i.low) == 0
    with pytest.raises(ValueError, match="no values"):
        seed_interval([], ReportSettings())


# ----------------------------------------------------------------------------- the statement that flipped
def _parasitics(tmp_path, finetune_per_seed, software=0.992, adapt=0.983, name="p.json"):
    return _result(tmp_path / name, "paper1_64", "parasitics",
                   {"none": 0.097, "bn_adapt": adapt, "bn_finetune": statistics.fmean(finetune_per_seed)},
                   software=software, per_seed={"bn_finetune": finetune_per_seed})


def test_the_statement_on_its_threshold_is_inconclusive_on_every_cpu(tmp_path):
    """Software 99.2%, fine-tuning 98.1% over 4 seeds: a drop of about 1 point, the threshold. The two
    roundings that made it 0.9 on one CPU and 1.0 on another (one test image of 360 either way, per seed)
    both give an interval around 1 point: inconclusive, not yes on one machine and NO on the other."""
    one_cpu = [0.9820, 0.9830, 0.9810, 0.9840]    # drop 0.95 points
    other_cpu = [0.9810, 0.9815, 0.9805, 0.9830]  # drop 1.05 points
    for k, seeds in enumerate((one_cpu, other_cpu)):
        check = _close(shape_check(load_results([_parasitics(tmp_path, seeds, name=f"{k}.json")]), ReportSettings()))
        assert check.mark == "inconclusive" and check.holds is None and check.inconclusive
        drops = [100 * (0.992 - a) for a in seeds]
        mean = statistics.fmean(drops)
        half = max(T3_975 * statistics.stdev(drops) / 2, 0.25)
        assert check.evidence.startswith(f"paper1_64 (64x64): {mean:.1f} [{mean - half:.1f}, {mean + half:.1f}]")
        assert "95% t-interval over 4 seed(s), half-width >= 0.25 points" in check.evidence
        assert check.line().startswith("- **inconclusive**: BN fine-tuning is close to software (<= 1 points)")


@pytest.mark.parametrize("seeds, mark", [
    ([0.9890, 0.9900, 0.9895, 0.9905], "yes"),  # drop 0.22 +- 0.25 (floor): wholly below 1 point
    ([0.9700, 0.9720, 0.9710, 0.9730], "NO"),   # drop 2.05 +- 0.25: wholly above
    ([0.9890, 0.9600, 0.9890, 0.9600], "inconclusive"),  # mean drop 1.7, but the seeds spread 2.9 points
])
def test_the_statement_is_decided_when_the_interval_clears_the_threshold(tmp_path, seeds, mark):
    check = _close(shape_check(load_results([_parasitics(tmp_path, seeds)]), ReportSettings()))
    assert check.mark == mark


def test_one_seed_decides_no_statement(tmp_path):
    """A single seed shows no spread: every statement is inconclusive and says why, however far from
    its threshold (an 89.5-point drop of no mitigation)."""
    path = _result(tmp_path / "a.json", "c", "parasitics", {"none": 0.097, "bn_adapt": 0.983, "bn_finetune": 0.99},
                   software=0.992, seeds=1)
    checks = shape_check(load_results([path]), ReportSettings())
    assert [c.mark for c in checks] == ["inconclusive"] * 3
    assert all(c.evidence.endswith("1 seed(s): no spread over seeds to measure, so no verdict; evaluate with 2 or "
                                   "more seeds (evaluation.seeds)") for c in checks)
    # a file without per-seed accuracies counts as one seed (its mean)
    d = json.loads(path.read_text())
    for m in d["methods"].values():
        m.pop("accuracy_per_seed")
    path.write_text(json.dumps(d))
    assert [c.mark for c in shape_check(load_results([path]), ReportSettings())] == ["inconclusive"] * 3


def test_statements_of_different_lengths_are_not_paired(tmp_path):
    path = _result(tmp_path / "a.json", "c", "parasitics", {"none": 0.1, "bn_adapt": 0.98}, software=0.99,
                   per_seed={"none": [0.1, 0.1, 0.1]})
    recovery = shape_check(load_results([path]), ReportSettings())[1]
    assert recovery.mark == "inconclusive" and "different numbers of seeds" in recovery.evidence


# ----------------------------------------------------------------------------- warnings
def test_a_method_above_software_warns_with_its_likely_cause(tmp_path):
    """The MNIST finding: software 90.0%, BN adaptation 92.8% and fine-tuning 93.2% (here over 4 seeds
    with a small spread): both warn; no mitigation (10%) and a method within the floor (90.2%) do not."""
    path = _result(tmp_path / "m.json", "paper1_64", "parasitics",
                   {"none": 0.10, "bn_adapt": 0.928, "bn_finetune": 0.932, "retrain": 0.902}, software=0.90,
                   per_seed={"bn_adapt": [0.926, 0.928, 0.930, 0.928]})
    rows = load_results([path])
    warnings = [w for w in find_warnings(rows, ReportSettings()) if w.kind == "above_software"]
    assert [w.method for w in warnings] == ["bn_adapt", "bn_finetune"]
    w = warnings[0]
    assert (w.reference, w.cause) == ("software", UNDERTRAINED_CAUSE)
    diffs = [100 * (a - 0.90) for a in [0.926, 0.928, 0.930, 0.928]]
    assert w.difference.estimate == pytest.approx(2.8)
    assert w.difference.high - w.difference.estimate == pytest.approx(
        max(T3_975 * statistics.stdev(diffs) / 2, 0.25), rel=1e-9)
    assert w.line() == (f"- **above_software**: paper1_64 / m / parasitics: bn_adapt is {w.difference.text()} points "
                        f"above software (4 seed(s)). Likely cause: {UNDERTRAINED_CAUSE}")
    md = markdown_table(rows)
    assert md.count("- **above_software**") == 2 and "Warnings (a method above software" in md
    assert "software model is likely undertrained" in md and "or the mitigation regularises" in md


def test_above_software_within_the_uncertainty_does_not_warn(tmp_path):
    """2 points above software in the mean, but two seeds 4 points apart: the interval holds 0."""
    path = _result(tmp_path / "m.json", "c", "s", {"bn_adapt": 0.92}, software=0.90,
                   per_seed={"bn_adapt": [0.90, 0.94]})
    assert find_warnings(load_results([path]), ReportSettings()) == []
    assert "\n- none\n" in markdown_table(load_results([path]))


def test_a_finetune_below_its_starting_point_warns(tmp_path):
    """The two-circuit finding: bn_finetune 43.9% against bn_adapt 46.4%, paired seed by seed. bn_finetune
    re-estimates its statistics at its end, so bn_adapt is its starting point; adapt_finetune and retrain
    start from bn_adapt too; neither above nor within the floor warns."""
    path = _result(tmp_path / "m.json", "c", "drift", {"none": 0.1, "bn_adapt": 0.464, "bn_finetune": 0.439,
                                                       "adapt_finetune": 0.466, "retrain": 0.463}, software=0.99,
                   per_seed={"bn_adapt": [0.46, 0.47, 0.46, 0.466], "bn_finetune": [0.43, 0.445, 0.44, 0.441]})
    warnings = find_warnings(load_results([path]), ReportSettings())
    assert [(w.kind, w.method, w.reference) for w in warnings] == [("below_start", "bn_finetune", "bn_adapt")]
    diffs = [100 * (f - a) for f, a in zip([0.43, 0.445, 0.44, 0.441], [0.46, 0.47, 0.46, 0.466], strict=True)]
    half = T3_975 * statistics.stdev(diffs) / 2
    w = warnings[0]
    assert w.difference.estimate == pytest.approx(statistics.fmean(diffs))
    assert w.difference.low == pytest.approx(statistics.fmean(diffs) - half)
    assert w.cause == BELOW_START_CAUSE
    assert w.line().startswith(f"- **below_start**: c / m / drift: bn_finetune ends {w.difference.text()} points "
                               "relative to its starting point bn_adapt (4 seed(s)). Likely cause: the fine-tune")


def test_starting_points_follow_the_method_and_what_the_result_records(tmp_path):
    accs = {"none": 0.5, "bn_adapt": 0.9, "bn_finetune": 0.8, "adapt_finetune": 0.95, "lora": 0.7, "vera": 0.99}
    path = _result(tmp_path / "m.json", "c", "s", accs, software=0.99)
    d = json.loads(path.read_text())
    d["evaluation"] = {"bn_finetune": {"reestimate_stats": False}}  # fine-tuning from the converted network
    d["methods"]["lora"]["start_method"] = "bn_adapt"
    d["methods"]["vera"]["start_accuracy_per_seed"] = [0.995, 0.996, 0.995, 0.997]  # its own recorded start
    path.write_text(json.dumps(d))
    rows = load_results([path])
    assert {r["method"]: starting_point(r) for r in rows} == {
        "none": "", "bn_adapt": "", "bn_finetune": "none", "adapt_finetune": "bn_adapt", "lora": "bn_adapt",
        "vera": "bn_adapt"}  # vera: no record, its own block's reestimate_stats (absent: true)
    below = [(w.method, w.reference) for w in find_warnings(rows, ReportSettings()) if w.kind == "below_start"]
    assert below == [("lora", "bn_adapt"), ("vera", "recorded start")]  # bn_finetune 80% is above none's 50%
    d["evaluation"] = {"vera": {"reestimate_stats": False}}
    path.write_text(json.dumps(d))
    rows = load_results([path])
    assert next(starting_point(r) for r in rows if r["method"] == "bn_finetune") == "bn_adapt"
    assert next(starting_point(r) for r in rows if r["method"] == "vera") == "none"
    assert ("bn_finetune", "bn_adapt") in [(w.method, w.reference) for w in find_warnings(rows, ReportSettings())]


def test_a_single_seed_warns_beyond_the_floor_only(tmp_path):
    """One seed (the MNIST config): the floor is the whole interval; 2.8 points above software warns,
    0.2 points does not (that one warns for ending 2.6 points below bn_adapt, its starting point)."""
    path = _result(tmp_path / "m.json", "c", "s", {"bn_adapt": 0.928, "bn_finetune": 0.902}, software=0.90, seeds=1)
    warnings = find_warnings(load_results([path]), ReportSettings())
    assert [(w.kind, w.method, w.difference.n_seeds) for w in warnings] == [
        ("above_software", "bn_adapt", 1), ("below_start", "bn_finetune", 1)]
    assert "(1 seed(s): no spread over seeds, the floor alone)" in warnings[0].line()


def test_non_finite_results_raise_no_warning(tmp_path):
    path = _result(tmp_path / "m.json", "c", "s", {"bn_adapt": float("nan"), "bn_finetune": 0.1}, software=0.9)
    assert find_warnings(load_results([path]), ReportSettings()) == []


def test_summary_json_holds_statements_and_warnings(tmp_path):
    paths = [_parasitics(tmp_path, [0.9820, 0.9830, 0.9810, 0.9840]),
             _result(tmp_path / "above.json", "paper1_64", "noise_0.1", {"bn_adapt": 0.999}, software=0.99,
                     sigma=0.1)]
    out = tmp_path / "r"
    assert main(["report", "-q", *map(str, paths), "--md", str(out / "r.md"), "--csv", str(out / "r.csv"),
                 "--plot", str(out / "p.png"), "--summary-json", str(out / "summary.json"),
                 "--settings-json", '{"confidence": 0.9, "min_half_width_points": 0.1}']) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "xbarchar.report_summary" and summary["format_version"] == 1
    assert summary["settings"]["confidence"] == 0.9 and summary["settings"]["min_half_width_points"] == 0.1
    close = next(s for s in summary["statements"] if s["text"].startswith("BN fine-tuning is close"))
    assert close["verdict"] == "inconclusive" and close["holds"] is None
    (w,) = summary["warnings"]
    assert (w["kind"], w["method"], w["scenario"], w["reference"]) == ("above_software", "bn_adapt", "noise_0.1",
                                                                      "software")
    assert w["difference_points"]["estimate"] == pytest.approx(0.9) and w["difference_points"]["n_seeds"] == 4
    assert w["difference_points"]["low"] == pytest.approx(0.8)  # no spread: the floor of 0.1
    assert "**above_software**" in (out / "r.md").read_text()


@pytest.mark.parametrize("settings, message", [
    ({"confidence": 1.0}, "report.confidence: expected a confidence level in [0.5, 1), got 1.0"),
    ({"confidence": 0.3}, "report.confidence: expected a confidence level in [0.5, 1), got 0.3"),
    ({"min_half_width_points": -0.1}, "report.min_half_width_points: expected a number of percentage points in "
                                      "[0, 100], got -0.1"),
    ({"min_half_width_points": True}, "report.min_half_width_points: expected a number"),
])
def test_bad_uncertainty_settings_are_named(settings, message):
    with pytest.raises(ValueError, match="^" + message.replace("[", "\\[").replace("(", "\\(").replace(")", "\\)")):
        ReportSettings.from_dict(settings)


def test_bad_uncertainty_settings_fail_the_workflow_check():
    import copy

    import yaml

    from pipeline.config import ConfigError, check_schema, validate_config
    from tests.conftest import REPO

    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    bad = copy.deepcopy(config)
    bad["report"] = {"confidence": 1.5}
    with pytest.raises(ConfigError, match=r"^report\.confidence: 1\.5 is greater than or equal to the maximum of 1"):
        check_schema(bad, REPO / "config" / "schema.yaml")
    with pytest.raises(ConfigError, match=r"report\.confidence: expected a confidence level in \[0\.5, 1\)"):
        validate_config(bad)
    bad["report"] = {"min_half_width_points": "wide"}
    with pytest.raises(ConfigError, match=r"report\.min_half_width_points = 'wide': expected a number"):
        validate_config(bad)


def test_variants_per_calibration_size_start_from_their_own_size(tmp_path):
    """A result with one entry per method and calibration size (``methods.X.method`` and
    ``calibration_images``): bn_finetune at 100 images starts from bn_adapt at 100 images, not at 10."""
    accs = {"bn_adapt_n10": 0.50, "bn_adapt_n100": 0.90, "bn_finetune_n10": 0.60, "bn_finetune_n100": 0.80}
    path = _result(tmp_path / "v.json", "c", "s", accs, software=0.99)
    d = json.loads(path.read_text())
    for name, m in d["methods"].items():
        base, _, n = name.rpartition("_n")
        m.update(method=base, calibration_images=int(n))
    path.write_text(json.dumps(d))
    rows = load_results([path])
    assert [(w.kind, w.method, w.reference) for w in find_warnings(rows, ReportSettings())] == [
        ("below_start", "bn_finetune_n100", "bn_adapt_n100")]
    assert {r["method"]: starting_point(r) for r in rows}["bn_finetune_n10"] == "bn_adapt"


def test_interval_text_prints_no_negative_zero():
    assert Interval(0.5, -0.04, 1.04, 3).text() == "0.5 [0.0, 1.0]"
    assert Interval(-0.5, -1.04, -0.06, 3).text() == "-0.5 [-1.0, -0.1]"
