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
