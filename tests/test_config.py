from pathlib import Path

import pytest

from molvae.config import ConfigError, TrainConfig, flatten, load_config, validate

REPO = Path(__file__).resolve().parents[1]


def test_defaults_load_and_flatten():
    cfg = load_config()
    flat = flatten(cfg)
    assert flat["train.beta_max"] == "0.05"
    assert flat["model.latent_size"] == "128"


def test_shipped_toml_is_the_default(tmp_path):
    """molvae.toml lists every option with its default: loading it changes nothing."""
    from tests.conftest import REPO

    shipped, default = flatten(load_config(REPO / "molvae.toml")), flatten(load_config())
    differ = {k: (v, default[k]) for k, v in shipped.items() if v != default[k]
              and str((REPO / v).resolve()) != default[k]}  # relative paths: the repo's
    assert set(shipped) == set(default) and not differ, differ
    text = (REPO / "molvae.toml").read_text()
    sections = {k.split(".")[0] for k in default if "." in k}
    names = {k.split(".")[1] if k.split(".")[0] in sections else k.split(".")[0] for k in default}
    missing = sorted(n for n in names if f"\n{n} =" not in text and f"\n# {n} =" not in text)
    assert not missing, missing


def test_every_unknown_key_is_listed_in_one_error(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('colour = 1\n[train]\nepochz = 3\nlr = -1\n[model]\nlatent = 4\n')
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    msg = str(exc.value)
    assert "4 invalid config entries" in msg and "\n" not in msg
    for key in ("colour", "train.epochz", "train.lr", "model.latent"):
        assert key in msg


def test_overrides_are_typed_and_validated():
    cfg = load_config(overrides=["train.epochs=7", "generate.temperature=0.5", "data.path=x.csv"])
    assert cfg.train.epochs == 7 and cfg.generate.temperature == 0.5
    assert str(cfg.data.path) == "x.csv"
    with pytest.raises(ConfigError, match="generate.temperature"):
        load_config(overrides=["generate.temperature=0"])
    with pytest.raises(ConfigError, match="not of the form"):
        load_config(overrides=["train.epochs"])


def test_pipeline_requests_are_checked_as_a_sample_request_is():
    """conditional.targets: the message generate.condition gives for a bad value, and an
    empty request refused before any sampling (it would sample without a condition)."""
    ok = load_config(overrides=["conditional.targets=[{LogP = [2, 3]}, {tpsa = 70}]"])
    assert ok.conditional.targets == [{"LogP": (2.0, 3.0)}, {"tpsa": 70.0}]
    for bad, match in [("[{logp = true}]", "logp: want a finite number"),
                       ("[{logp = [1, 2, 3]}]", "got \\[1, 2, 3\\]"),
                       ("[{logp = 2}, {}]", "conditional.targets.1: .*at least 1 item")]:
        with pytest.raises(ConfigError, match=match):
            load_config(overrides=[f"conditional.targets={bad}"])


def test_empty_string_means_unset():
    cfg = load_config(overrides=['model_path=""', 'tracking.tracking_uri=""'])
    assert cfg.model_path is None and cfg.tracking.tracking_uri is None


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "x.toml"
    bad.write_text("[train\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_section_validation_names_the_key():
    with pytest.raises(ConfigError, match="batch_size"):
        validate(TrainConfig, {"batch_size": 0})


def test_training_options_that_would_do_nothing_are_refused():
    with pytest.raises(ConfigError, match="latent_noise_share widens nothing"):
        validate(TrainConfig, {"latent_noise_share": 0.5})
    with pytest.raises(ConfigError, match="distill_weight weighs nothing"):
        validate(TrainConfig, {"distill_weight": 0.2})
    with pytest.raises(ConfigError, match="widens nothing.*; distill_weight weighs"):  # both said
        validate(TrainConfig, {"distill_weight": 0.2, "latent_noise_share": 0.5})
    assert validate(TrainConfig, {"latent_noise_share": 0.5, "latent_noise": 1.5}).latent_noise_share == 0.5
    assert validate(TrainConfig, {"distill_weight": 0.2, "distill": "p.npz"}).distill_weight == 0.2
    with pytest.raises(ConfigError, match="sampler_only trains on refinement's pairs"):
        validate(TrainConfig, {"sampler_only": True})


@pytest.mark.parametrize("override", ["train.lr=inf", "train.lr=nan", "optimize.sigma=inf",
                                      "generate.temperature=inf", "generate.neighbor_radii=[nan]",
                                      "score.min_reference_similarity=nan"])
def test_non_finite_numbers_are_refused(override):
    with pytest.raises(ConfigError, match=override.split("=")[0].replace("[", "")):
        load_config(None, [override])


def test_the_commented_scorers_example_in_molvae_toml_is_valid():
    import tomllib

    from molvae.config import RunConfig
    from tests.conftest import REPO

    text = (REPO / "molvae.toml").read_text()
    block = text[text.index("# [scorers.potency]"):text.index("[tracking]")]
    data = tomllib.loads("\n".join(line[2:] for line in block.splitlines() if line.startswith("# ")))
    cfg = validate(RunConfig, data)
    assert cfg.scorers["lead_like"].terms[0].property == "potency"


def test_a_config_files_inputs_are_read_beside_it(tmp_path, monkeypatch):
    """Relative input paths in a config file mean beside the file (the shipped molvae.toml
    works from any folder); outputs and --set values stay relative to where you run."""
    (tmp_path / "proj").mkdir()
    cfg_file = tmp_path / "proj" / "cfg.toml"
    cfg_file.write_text('model_path = "m.pt"\nout_dir = "runs"\n[data]\npath = "d/train.csv"\n'
                        '[score]\nknown_molecules = "/abs/known.csv"\n[train]\ninit_from = ""\n')
    monkeypatch.chdir(tmp_path)
    cfg = load_config(cfg_file)
    assert cfg.model_path == tmp_path / "proj" / "m.pt"
    assert cfg.data.path == tmp_path / "proj" / "d" / "train.csv"
    assert str(cfg.score.known_molecules) == "/abs/known.csv" and cfg.train.init_from is None
    assert str(cfg.out_dir) == "runs"  # an output: where you run
    assert str(load_config(cfg_file, ["data.path=x.csv"]).data.path) == "x.csv"
    shipped = load_config(REPO / "molvae.toml")  # from another folder than the repository
    assert shipped.data.path.is_file() and shipped.score.known_molecules.is_file()


def test_a_copy_of_the_shipped_config_still_reads_the_shipped_files(tmp_path, monkeypatch):
    """The README says: copy molvae.toml, edit it, pass it with -c. Its data/... inputs are
    then not beside the copy: they mean the shipped files (a file beside the copy wins)."""
    copy = tmp_path / "my.toml"
    copy.write_text((REPO / "molvae.toml").read_text())
    monkeypatch.chdir(tmp_path)
    cfg = load_config(copy)
    assert cfg.data.path == REPO / "data" / "moses_train_100k.csv.gz"
    assert cfg.score.known_molecules == REPO / "data" / "moses_train_100k.csv.gz"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "moses_train_100k.csv.gz").write_bytes(b"")  # the user's own
    assert load_config(copy).data.path == tmp_path / "data" / "moses_train_100k.csv.gz"
    missing = tmp_path / "other.toml"
    missing.write_text('[data]\npath = "data/nothing_like_it.csv"\n')
    assert load_config(missing).data.path == tmp_path / "data" / "nothing_like_it.csv"


def test_scorer_files_in_a_config_are_read_beside_it(tmp_path, monkeypatch):
    """`-c path/to/opt.toml` works from any folder for scorer files too (they were looked up
    in the working folder): file.py:function and chemprop:model.pt objectives, callable and
    chemprop scorers; a module reference or a property name stays as it is."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "opt.toml").write_text(
        '[optimize]\nobjective = "team/score.py:predict"\n'
        '[scorers.a]\nkind = "callable"\ntarget = "team/score.py:predict"\n'
        '[scorers.b]\nkind = "callable"\ntarget = "team_oracles.pic50:predict"\n'
        '[scorers.c]\nkind = "chemprop"\ntarget = "models/pIC50.pt"\n')
    (proj / "chem.toml").write_text('[optimize]\nobjective = "chemprop:models/pIC50.pt"\n')
    (proj / "plain.toml").write_text('[optimize]\nobjective = "qed"\n')
    monkeypatch.chdir(tmp_path)
    cfg = load_config("proj/opt.toml")
    assert cfg.optimize.objective == f"{proj}/team/score.py:predict"
    assert cfg.scorers["a"].target == f"{proj}/team/score.py:predict"
    assert cfg.scorers["b"].target == "team_oracles.pic50:predict"
    assert cfg.scorers["c"].target == f"{proj}/models/pIC50.pt"
    assert load_config("proj/chem.toml").optimize.objective == f"chemprop:{proj}/models/pIC50.pt"
    assert load_config("proj/plain.toml").optimize.objective == "qed"
