"""Campaign files: every shipped file validates; bad ones give errors naming field and value."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autolab.config import CampaignConfig, load_campaign, parse_campaign
from autolab.exceptions import ConfigError

CAMPAIGN_DIR = Path(__file__).parent.parent / "campaigns"
CAMPAIGNS = sorted(CAMPAIGN_DIR.glob("*.yaml"))
BASE = yaml.safe_load((CAMPAIGN_DIR / "target_550nm.yaml").read_text())


def test_shipped_campaigns_exist() -> None:
    names = {p.name for p in CAMPAIGNS}
    assert {"target_550nm.yaml", "target_610nm_red.yaml", "max_qy_pareto.yaml"} <= names


@pytest.mark.parametrize("path", CAMPAIGNS, ids=lambda p: p.name)
def test_shipped_campaigns_validate(path: Path) -> None:
    cfg = load_campaign(path)
    assert isinstance(cfg, CampaignConfig)
    space = cfg.space.build()
    assert space.dim >= 6


def _bad(change: dict[str, Any]) -> str:
    data = copy.deepcopy(BASE)
    for dotted, value in change.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    with pytest.raises(ConfigError) as info:
        parse_campaign(data, "x.yaml")
    return str(info.value)


def test_unknown_keys_are_rejected_with_their_path() -> None:
    msg = _bad({"budget.max_experiment": 3})
    assert "x.yaml: budget.max_experiment" in msg and "unknown key" in msg
    assert "unknown key" in _bad({"colour": "red"})


def test_out_of_range_values_name_field_value_and_rule() -> None:
    msg = _bad({"budget.max_experiments": -3})
    assert "budget.max_experiments = -3" in msg and "greater than or equal to 1" in msg
    msg = _bad({"stop.qy_min": 1.5})
    assert "stop.qy_min = 1.5" in msg


def test_bounds_beyond_the_reactor_are_refused() -> None:
    msg = _bad({"space.bounds": {"t_core_c": [100, 200]}})
    assert "t_core_c" in msg and "[160, 220]" in msg


def test_searched_and_fixed_at_once_is_refused() -> None:
    assert "both searched and fixed" in _bad({"space.fixed": {"t_core_c": 180, "p_to_in": 3.6}})


def test_missing_conditions_are_named() -> None:
    msg = _bad({"space.parameters": ["t_core_c", "tau_core_min"]})
    assert "neither searched nor fixed" in msg and "s_to_zn" in msg


def test_unknown_outcome_in_objective() -> None:
    msg = _bad({"objective.terms": [{"kind": "maximize", "outcome": "brightness"}]})
    assert "brightness" in msg and "pl_peak_nm" in msg


def test_bad_constraint_text() -> None:
    assert "t_shell_c + banana" in _bad({"space.constraints": ["t_shell_c + banana >= 3"]})


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text("name: x\nobjective: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML at line \d+"):
        load_campaign(f)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read campaign file"):
        load_campaign(tmp_path / "nope.yaml")


def test_cli_style_overrides(tmp_path: Path) -> None:
    cfg = load_campaign(CAMPAIGNS[0], {"budget.max_experiments": 5, "seed": 3})
    assert cfg.budget.max_experiments == 5 and cfg.seed == 3


def test_fingerprint_changes_with_content() -> None:
    a = parse_campaign(copy.deepcopy(BASE))
    changed = copy.deepcopy(BASE)
    changed["seed"] = 99
    assert a.fingerprint() == parse_campaign(copy.deepcopy(BASE)).fingerprint()
    assert a.fingerprint() != parse_campaign(changed).fingerprint()


def _paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    return out


_GARBAGE = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                     st.lists(st.integers(), max_size=3),
                     st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_paths(BASE)), _GARBAGE)
def test_mutated_campaigns_validate_or_fail_clearly(path: tuple[str, ...], value: Any) -> None:
    data = copy.deepcopy(BASE)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    try:
        parse_campaign(data, "fuzz.yaml")
    except ConfigError as err:
        assert str(err).startswith("fuzz.yaml")


# ------------------------------------------------------------------ typed settings per kind
def test_executor_settings_mirror_the_cstr_executor_keywords() -> None:
    import inspect

    from autolab.config import EXECUTOR_SETTINGS
    from autolab.executors.cstr import CSTRExecutor

    params = inspect.signature(CSTRExecutor.__init__).parameters
    for name, info in EXECUTOR_SETTINGS["cstr"].model_fields.items():
        assert name in params, f"{name} is not a CSTRExecutor keyword"
        assert info.default == params[name].default, name
    # keywords a campaign file cannot express are deliberately not settings
    assert set(params) - set(EXECUTOR_SETTINGS["cstr"].model_fields) == {
        "self", "devices", "qy_reference", "install_signal_handlers"}


def test_optimizer_settings_registry_covers_every_optimizer_and_is_what_botorch_uses() -> None:
    from autolab.optimizer import OPTIMIZERS
    from autolab.optimizer.bayes import BotorchSettings as UsedByBotorch
    from autolab.optimizer.settings import OPTIMIZER_SETTINGS, BotorchSettings

    assert set(OPTIMIZER_SETTINGS) == set(OPTIMIZERS)
    assert UsedByBotorch is BotorchSettings  # one definition of every setting


def test_settings_are_stored_as_validated() -> None:
    data = copy.deepcopy(BASE)
    data["optimizer"]["settings"] = {"n_init": 6.0}
    cfg = parse_campaign(data)
    assert cfg.optimizer.settings == {"n_init": 6}
    assert isinstance(cfg.optimizer.settings["n_init"], int)


@pytest.mark.parametrize(("change", "needle"), [
    ({"optimizer.settings": {"n_inti": 6}}, "did you mean 'n_init'"),
    ({"optimizer.settings": {"n_init": 0}}, "optimizer.settings.n_init"),
    ({"optimizer.settings": {"device": "tpu"}}, "optimizer.settings.device"),
    ({"executor.settings": {"stir_rpm": 600}}, "unknown setting of executor 'twin'"),
    ({"seed": 2**32}, "seed"),
    ({"budget.max_lab_hours": float("nan")}, "budget.max_lab_hours"),
    ({"budget.max_rig_events_in_a_row": 0}, "budget.max_rig_events_in_a_row"),
    ({"budget.max_rig_events_in_a_row": 2.5}, "budget.max_rig_events_in_a_row"),
    ({"stop.no_improvement_after": True}, "stop.no_improvement_after"),
    ({"optimizer.batch_size": 2.5}, "optimizer.batch_size"),
    ({"analyzer": {"qy_calibration_rel": 1.0}}, "analyzer.qy_calibration_rel = 1.0"),
    ({"analyzer": {"qy_calibration_rel": -0.01}}, "analyzer.qy_calibration_rel = -0.01"),
    ({"analyzer": {"qy_calibration_rel": float("nan")}}, "analyzer.qy_calibration_rel"),
    ({"analyzer": {"qy_calibration": 0.05}}, "analyzer.qy_calibration"),
])
def test_typed_settings_and_bounds(change: dict[str, Any], needle: str) -> None:
    assert needle in _bad(change)


def test_the_analyzer_block_defaults_to_the_analyzers_own_settings() -> None:
    """Without ``analyzer:`` a campaign's analyzer is the default one (same settings object)."""
    from autolab.analysis import AnalyzerSettings

    assert parse_campaign(copy.deepcopy(BASE)).analyzer.settings() == AnalyzerSettings()
    data = {**copy.deepcopy(BASE), "analyzer": {"qy_calibration_rel": 0.08}}
    assert parse_campaign(data).analyzer.settings() == AnalyzerSettings(qy_calibration_rel=0.08)


def test_constraint_feasibility() -> None:
    from autolab.config import check_feasible_volume, feasible_fraction
    from autolab.space import LinearConstraint, qd_space

    assert feasible_fraction(qd_space()) > 0.5
    tight = qd_space(constraints=[LinearConstraint.parse("t_shell_c - t_core_c >= 159")])
    assert 0 < feasible_fraction(tight) < 1e-3
    with pytest.raises(ConfigError, match="% of the search box"):
        check_feasible_volume(tight)
    empty = qd_space(constraints=[LinearConstraint.parse("t_core_c >= 200"),
                                  LinearConstraint.parse("t_core_c <= 190")])
    with pytest.raises(ConfigError, match="contradict"):
        check_feasible_volume(empty)


def test_warnings_for_a_target_the_twin_cannot_reach() -> None:
    data = copy.deepcopy(BASE)
    data["objective"]["terms"][0]["value"] = 700
    assert any("outside what the digital twin reaches" in w
               for w in parse_campaign(data).warnings())
    assert parse_campaign(copy.deepcopy(BASE)).warnings() == []


def test_override_into_a_scalar_section_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    data = copy.deepcopy(BASE)
    data["budget"] = 7
    f.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"budget = 7: expected a mapping"):
        load_campaign(f, {"budget.max_experiments": 3})


# ------------------------------------------------------------------ YAML guards
def test_yaml_numbers_in_exponent_form_are_floats() -> None:
    from autolab.yamlfile import parse_yaml_text

    assert parse_yaml_text("a: 1e30\nb: 1e-3\nc: -2E+5\nd: 1.5e3\ne: 12\nf: 1e")\
        .data == {"a": 1e30, "b": 1e-3, "c": -2e5, "d": 1500.0, "e": 12, "f": "1e"}


def test_yaml_lines_of_keys() -> None:
    from autolab.yamlfile import parse_yaml_text

    doc = parse_yaml_text("a:\n  b: 1\n  c:\n    - x\n    - y\n")
    assert doc.lines[("a", "b")] == 2 and doc.lines[("a", "c", 1)] == 5
    assert doc.line_of(("a", "c", 1, "nope")) == 5


def test_yaml_merge_keys_are_not_duplicates() -> None:
    from autolab.yamlfile import parse_yaml_text

    doc = parse_yaml_text("base: &b {x: 1}\nthing:\n  <<: *b\n  y: 2\n")
    assert doc.data["thing"] == {"x": 1, "y": 2}


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_or_is_a_config_error(text: str) -> None:
    from autolab.yamlfile import parse_yaml_text

    try:
        parse_yaml_text(text, "fuzz.yaml")
    except ConfigError as err:
        assert str(err).startswith("fuzz.yaml")


def test_unknown_condition_gets_did_you_mean() -> None:
    msg = _bad({"space.fixed": {"p_to_inn": 3.6}})
    assert "unknown condition 'p_to_inn'; did you mean 'p_to_in'?" in msg


def test_the_blank_age_is_an_executor_setting_checked_and_passed_to_the_procedure() -> None:
    from autolab.campaign import make_executor

    data = copy.deepcopy(BASE)
    data.setdefault("executor", {}).setdefault("settings", {})["blank_max_age_h"] = 6
    executor: Any = make_executor(parse_campaign(data, "x.yaml"))
    assert executor.settings.blank_max_age_h == 6.0
    data["executor"]["settings"]["blank_max_age_h"] = 0
    with pytest.raises(ConfigError, match="blank_max_age_h"):
        parse_campaign(data, "x.yaml")
