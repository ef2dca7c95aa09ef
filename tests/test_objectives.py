"""User objectives and task scorers: callables from a file or a module, GuacaMol/PMO task
definitions, modifiers, the oracle's failure isolation and call log, PMO's AUC."""

from __future__ import annotations

import math
import re
import textwrap

import numpy as np
import pytest

from molvae import chem
from molvae.config import DesirabilityTerm, OptimizeConfig, ScorerConfig, load_config
from molvae.errors import ConfigError, OptimizationError
from molvae.optimization import Objective, Oracle, optimize, top_k_auc
from molvae.optimization import scorers as S

CELECOXIB = "CC1=CC=C(C=C1)C1=CC(=NN1C1=CC=C(C=C1)S(N)(=O)=O)C(F)(F)F"


def _score(cfg: ScorerConfig, smiles: list[str]) -> np.ndarray:
    return S.build(cfg)(smiles, [chem.to_mol(s) for s in smiles])


@pytest.mark.parametrize("kind, kw, x, expected", [
    ("gaussian", {"mu": 2, "sigma": 0.5}, 2.5, math.exp(-0.5)),
    ("min_gaussian", {"mu": 1, "sigma": 1}, 0.2, 1.0),
    ("min_gaussian", {"mu": 1, "sigma": 1}, 2.0, math.exp(-0.5)),
    ("max_gaussian", {"mu": 100, "sigma": 10}, 80, math.exp(-2)),
    ("max_gaussian", {"mu": 100, "sigma": 10}, 130, 1.0),  # 1 at or above mu
    ("threshold", {"high": 0.8}, 0.4, 0.5),
    ("threshold", {"high": 0.8}, 0.9, 1.0),
    ("maximize", {"low": 0, "high": 0.75}, 0.3, 0.4),  # ClippedScoreModifier(upper_x=0.75)
    ("value", {}, 0.37, 0.37),
])
def test_guacamol_modifiers(kind, kw, x, expected):
    assert chem.term_desirability(x, DesirabilityTerm(property="p", kind=kind, **kw)) == \
        pytest.approx(expected)


def test_term_validation():
    with pytest.raises(ValueError, match="needs mu and sigma"):
        DesirabilityTerm(property="logp", kind="gaussian", mu=1)
    with pytest.raises(ValueError, match="needs low and high"):
        DesirabilityTerm(property="logp", kind="maximize")
    with pytest.raises(ValueError, match="needs high > 0"):
        DesirabilityTerm(property="logp", kind="threshold")
    with pytest.raises(ValueError, match="needs a target"):
        ScorerConfig(kind="similarity")
    with pytest.raises(ConfigError, match="scorers.x.kind"):
        load_config(None, ["scorers.x.kind=magic", "scorers.x.target=C"])


def test_task_scorers_on_known_molecules():
    tasks = S.builtin_tasks()
    assert len(tasks) == 20 and "deco_hop" in tasks
    # the target itself: 1 for a rediscovery; 4-methyl-3-nitroaniline is C7H8N2O2
    assert _score(tasks["celecoxib_rediscovery"], [CELECOXIB])[0] == pytest.approx(1.0)
    assert _score(tasks["isomers_c7h8n2o2"], ["Cc1ccc([N+](=O)[O-])cc1N", "CCO"]).tolist() == \
        pytest.approx([1.0, 0.0], abs=0.01)
    # deco_hop of its own target: similarity 1, both decorations present (forbidden: 0),
    # the scaffold present (1): arithmetic mean 0.5
    target = "CCCOc1cc2ncnc(Nc3ccc4ncsc4c3)c2cc1S(=O)(=O)C(C)(C)C"
    assert _score(tasks["deco_hop"], [target])[0] == pytest.approx(0.5)
    # valsartan_smarts is 0 without its required substructure (geometric mean)
    assert _score(tasks["valsartan_smarts"], [CELECOXIB])[0] == 0.0
    # a count-fingerprint Tanimoto: identical molecules 1, disjoint ones 0
    ecfp = ScorerConfig(kind="similarity", target="c1ccccc1O", fingerprint="ecfp4")
    v = _score(ecfp, ["Oc1ccccc1", "C#N", "not a molecule"])
    assert v[0] == pytest.approx(1.0) and v[1] == 0.0 and math.isnan(v[2])


@pytest.mark.parametrize("cfg, msg", [
    (ScorerConfig(kind="similarity", target="C1CC("), "not a valid molecule"),
    (ScorerConfig(kind="isomer", target="C7H8Xx2"), "unknown element"),
    (ScorerConfig(kind="isomer", target="c7h8"), "not a molecular formula"),
    (ScorerConfig(kind="smarts", target="[C"), "not a valid SMARTS"),
    (ScorerConfig(kind="property", target="colour"), "unknown property"),
    (ScorerConfig(kind="callable", target="no_such_module_xyz:f"), "cannot import"),
    (ScorerConfig(kind="callable", target="math:no_such_function"), "has no function"),
    (ScorerConfig(kind="callable", target="missing/file.py:f"), "no such file"),
    (ScorerConfig(kind="chemprop", target="missing.ckpt"), "chemprop"),
])
def test_bad_scorers_fail_before_work(cfg, msg, capfd):
    with pytest.raises(OptimizationError, match=msg):
        S.build(cfg)
    assert capfd.readouterr().err == ""  # our one line only: no RDKit log lines before it


def test_objective_names_resolve():
    named = {"sim": ScorerConfig(kind="similarity", target=CELECOXIB)}
    assert Objective.from_config(OptimizeConfig(objective="sim"), scorers=named).scorer
    assert Objective.from_config(OptimizeConfig(objective="pmo:median1")).scorer
    assert Objective.from_config(OptimizeConfig(objective="qed")).scorer is None
    with pytest.raises(OptimizationError, match="unknown task 'pmo:median9'"):
        Objective.from_config(OptimizeConfig(objective="pmo:median9"))
    with pytest.raises(OptimizationError, match="a task \\(pmo:NAME\\)"):
        Objective.from_config(OptimizeConfig(objective="potency"))
    loop = {"a": ScorerConfig(kind="mpo", terms=[DesirabilityTerm(property="a", kind="value")])}
    with pytest.raises(OptimizationError, match="loop"):
        Objective.from_config(OptimizeConfig(objective="a"), scorers=loop)


USER_SCORER = '''
import math

CALLS = []

def score(smiles):
    CALLS.append(len(smiles))
    if any("Br" in s for s in smiles):
        raise ValueError("cannot score bromine")
    return [float("nan") if "I" in s else len(s) / 100 for s in smiles]

def wrong_length(smiles):
    return [1.0]

def server_down(smiles):
    raise ConnectionError("model server down")

def one_number(smiles):
    return 1.0

def takes_nothing():
    return []

def words(smiles):
    return ["high" for s in smiles]
'''


def test_callable_from_a_file_isolates_failures(tmp_path):
    path = tmp_path / "my_oracle.py"
    path.write_text(textwrap.dedent(USER_SCORER))
    obj = Objective.from_config(OptimizeConfig(objective=f"{path}:score"))
    oracle = Oracle(obj, budget=10)
    rows = oracle(["CCO", "CCBr", "CCI", "c1ccccc1", "CCO"])
    # the batch raised on the bromide: retried one by one, only that molecule lost
    assert [r["scored"] for r in rows] == [True, False, False, True, True]
    assert rows[0]["score"] == pytest.approx(0.03) and math.isinf(rows[1]["score"])
    assert oracle.calls == 4 and oracle.unscorable == 2
    assert [c["smiles"] for c in oracle.log] == [r["smiles"] for r in rows[:4]]
    assert [c["scored"] for c in oracle.log] == [True, False, False, True]
    assert not rows[1]["admissible"]
    bad = Objective.from_config(OptimizeConfig(objective=f"{path}:wrong_length"))
    with pytest.raises(OptimizationError, match="returned 1 values for 2 molecules"):
        Oracle(bad, budget=10)(["CCO", "CCC"])


@pytest.mark.parametrize("name, msg", [
    ("server_down", "raised on every one of the 3 molecules it was given and has scored none: "
                    "ConnectionError: model server down"),
    ("takes_nothing", "has scored none: TypeError: takes_nothing() takes 0 positional arguments"),
    ("one_number", "returned float; it must return a list of one number per molecule"),
    ("words", "returned 'high' (str) for a molecule; it must return numbers"),
])
def test_a_broken_callable_stops_the_run_with_its_error(tmp_path, name, msg, caplog):
    """Not a budget of unscorable calls ending in 'success': the first batch says it is broken."""
    path = tmp_path / "my_oracle.py"
    path.write_text(textwrap.dedent(USER_SCORER))
    oracle = Oracle(Objective.from_config(OptimizeConfig(objective=f"{path}:{name}")), budget=10)
    with pytest.raises(OptimizationError, match=re.escape(msg)):
        oracle(["CCO", "CCN", "CCC"])


def test_a_callable_that_scored_before_keeps_going_and_says_why_it_failed(tmp_path, caplog):
    path = tmp_path / "my_oracle.py"
    path.write_text(textwrap.dedent(USER_SCORER))
    oracle = Oracle(Objective.from_config(OptimizeConfig(objective=f"{path}:score")), budget=10)
    oracle(["CCO"])
    rows = oracle(["CCBr", "CBr"])  # every molecule fails now, but it has scored before
    assert not any(r["scored"] for r in rows) and oracle.unscorable == 2
    assert "raised ValueError: cannot score bromine" in caplog.text
    assert caplog.text.count("raised ValueError") == 1  # the first error, once


def test_callable_from_a_module(monkeypatch, tmp_path):
    (tmp_path / "team_oracles").mkdir()
    (tmp_path / "team_oracles" / "__init__.py").write_text("")
    (tmp_path / "team_oracles" / "potency.py").write_text(
        "def predict(smiles):\n    return [s.count('N') for s in smiles]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    named = {"potency": ScorerConfig(kind="callable", target="team_oracles.potency:predict")}
    terms = [DesirabilityTerm(property="potency", kind="maximize", low=0, high=2),
             DesirabilityTerm(property="qed", kind="maximize", low=0, high=1)]
    mpo = ScorerConfig(kind="mpo", terms=terms, combine="arithmetic")
    obj = Objective.from_config(OptimizeConfig(objective="combo"),
                                scorers={**named, "combo": mpo})
    rows = Oracle(obj, budget=5)(["NCCN", "CCCC"])
    q = [chem.properties(chem.to_mol(s), ["qed"])["qed"] for s in ("NCCN", "CCCC")]
    assert rows[0]["score"] == pytest.approx((1.0 + q[0]) / 2)
    assert rows[1]["score"] == pytest.approx((0.0 + q[1]) / 2)


def test_top_k_auc_matches_pmo():
    # a run that finds 1.0 at once holds 1 over the whole budget; nothing found: 0
    assert top_k_auc([1.0] * 10, k=10, budget=100, every=5) == pytest.approx(1.0 - 5 / 200)
    assert top_k_auc([], budget=100) == 0.0
    scores = list(np.linspace(0, 1, 250))
    # the reference: PMO's top_auc (wenhao-gao/mol_opt main/optimizer.py), transcribed
    buffer = {f"m{i}": [s, i + 1] for i, s in enumerate(scores)}
    assert top_k_auc(scores, 10, 1000, 100) == pytest.approx(_pmo_top_auc(buffer, 10, 100, 1000))
    assert top_k_auc([math.nan, -math.inf, 0.5], k=2, budget=3, every=1) == \
        pytest.approx(_pmo_top_auc({"a": [0, 1], "b": [0, 2], "c": [0.5, 3]}, 2, 1, 3))


def _pmo_top_auc(buffer, top_n, freq_log, max_oracle_calls):
    total, prev, called = 0, 0, 0
    ordered = sorted(buffer.items(), key=lambda kv: kv[1][1])
    for idx in range(freq_log, min(len(buffer), max_oracle_calls), freq_log):
        top = sorted(ordered[:idx], key=lambda kv: kv[1][0], reverse=True)[:top_n]
        now = np.mean([v[1][0] for v in top])
        total += freq_log * (now + prev) / 2
        prev, called = now, idx
    top = sorted(ordered, key=lambda kv: kv[1][0], reverse=True)[:top_n]
    now = np.mean([v[1][0] for v in top])
    total += (len(buffer) - called) * (now + prev) / 2
    if len(buffer) < max_oracle_calls:
        total += (max_oracle_calls - len(buffer)) * now
    return total / max_oracle_calls


def test_optimize_a_task_records_every_call(tiny):
    cfg = OptimizeConfig(method="random", objective="pmo:celecoxib_rediscovery", oracle_budget=60)
    res = optimize(tiny, cfg, annotate=False)
    assert res.oracle_calls == len(res.calls) <= 60
    assert res.calls["call"].tolist() == list(range(1, len(res.calls) + 1))
    assert res.calls["smiles"].is_unique
    assert 0 < res.auc_top10 <= res.calls["score"].max() <= 1
    assert "pmo:celecoxib_rediscovery" in res.candidates.columns
