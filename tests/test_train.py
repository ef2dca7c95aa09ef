import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from molvae.checkpoint import export_model, load_model, read_checkpoint
from molvae.config import DataConfig, ModelConfig, TrainConfig
from molvae.errors import CheckpointError
from molvae.generate import sample
from molvae.train import lr_factor, train_model
from tests.conftest import SHIPPED_TRAIN, TINY_MODEL


def test_training_reports_collapse_metrics(tiny_trained):
    _, result = tiny_trained
    h = result.history
    assert len(h) == 3
    for key in ("val_kl", "active_units", "val_exact_recon", "val_token_acc", "val_loss"):
        assert key in h[-1]
    assert h[-1]["val_recon"] < h[0]["val_recon"]  # it learns
    assert 0 <= h[-1]["active_units"] <= TINY_MODEL["latent_size"]


def test_checkpoint_is_plain_data(tiny_trained):
    _, result = tiny_trained
    state = torch.load(result.checkpoint, weights_only=True)
    assert state["format_version"] == 1 and state["vocab"][:3] == ["<pad>", "<bos>", "<eos>"]
    assert set(state) >= {"model_config", "train_config", "model_state", "optimizer_state",
                          "epoch", "rng", "train_hashes"}


def test_training_stores_posterior_codes_as_the_prior(tiny_trained, tmp_path):
    loaded, result = tiny_trained
    n_train = loaded.info["train_size"]
    for path in (result.checkpoint, result.best_checkpoint):
        prior = torch.load(path, weights_only=True)["prior"]
        assert prior["mu"].shape == (n_train, TINY_MODEL["latent_size"])  # < 16384 molecules
        assert prior["mu"].dtype == torch.float16 and torch.isfinite(prior["logvar"]).all()
    state = read_checkpoint(result.checkpoint)
    assert load_model(result.checkpoint).prior["width"] == 1.0  # training stores width 1
    z = torch.zeros(4, TINY_MODEL["latent_size"])
    for bad in ({"mu": torch.zeros(4, 3), "logvar": torch.zeros(4, 3)},  # wrong latent size
                {"mu": z, "logvar": z, "width": 0.0}, {"mu": z, "logvar": z, "width": "wide"}):
        state["prior"] = bad
        torch.save(state, tmp_path / "bad_prior.pt")
        with pytest.raises(CheckpointError, match="malformed posterior prior"):
            load_model(tmp_path / "bad_prior.pt")
    state["prior"] = {"mu": z, "logvar": z, "width": 1.5}
    torch.save(state, tmp_path / "wide.pt")
    assert load_model(tmp_path / "wide.pt").prior["width"] == 1.5
    for bad in ({"refine": -1}, {"refine": True}, {"greedy": 1}, {"beam": 3}, {"refine": 11},
                {"condition_width": 0.0}, {"condition_width": "wide"}, {"condition_guidance": 21.0},
                {"condition_guidance": 3}):
        state["sampling"] = bad
        torch.save(state, tmp_path / "bad_sampling.pt")
        with pytest.raises(CheckpointError, match="malformed sampling defaults"):
            load_model(tmp_path / "bad_sampling.pt")


def test_same_seed_same_molecules_across_save_and_load(tiny_trained, tmp_path):
    loaded, result = tiny_trained
    before = sample(loaded, num_samples=50, seed=3, workers=1)["smiles"].tolist()
    small = export_model(result.checkpoint, tmp_path / "small.pt")
    assert small.stat().st_size < result.checkpoint.stat().st_size
    after = sample(load_model(small), num_samples=50, seed=3, workers=1)["smiles"].tolist()
    assert before == after
    assert sample(loaded, num_samples=50, seed=4, workers=1)["smiles"].tolist() != before


def test_bad_checkpoints_get_one_line_errors(tiny_trained, tmp_path):
    _, result = tiny_trained
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable molvae checkpoint"):
        load_model(junk)
    blob = result.checkpoint.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(blob[: len(blob) // 3])
    with pytest.raises(CheckpointError, match="not a readable.*cut short or damaged: copy it"):
        load_model(cut)
    state = read_checkpoint(result.checkpoint)
    torch.save({**state, "format_version": 99}, tmp_path / "v99.pt")
    with pytest.raises(CheckpointError, match="format 99 is not supported"):
        load_model(tmp_path / "v99.pt")
    state["model_config"] = {**state["model_config"], "latent_size": 3}
    torch.save(state, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match="incompatible") as exc:
        load_model(tmp_path / "shape.pt")
    assert "\n" not in str(exc.value)
    torch.save({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no format_version"):
        load_model(tmp_path / "other.pt")


def _cli_train(out, *extra):
    return [sys.executable, "-m", "molvae.cli", "train", "--out", str(out),
            "--set", "data.limit=600", "--set", f"data.cache_dir=\"{out.parent / 'cache'}\"",
            "--set", "train.batch_size=64", "--set", "train.epochs=4", "--set", "train.threads=1",
            "--set", "train.recon_eval_size=0", "--set", "train.patience=10",
            *[a for k, v in TINY_MODEL.items() for a in ("--set", f"model.{k}={v}")], *extra]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tmp_path, monkeypatch, capsys):
    from molvae.cli import main

    env = {**os.environ, "MOLVAE_NO_PROGRESS": "1"}
    monkeypatch.setenv("MOLVAE_NO_PROGRESS", "1")
    full = tmp_path / "full"  # the uninterrupted run, in this process (spares a Python start)
    assert main(_cli_train(full)[3:]) == 0
    said = capsys.readouterr()  # recon_eval_size 0: no reconstruction measured, none printed
    assert "model: " in said.out and "nan" not in said.out + said.err
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli_train(killed), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (killed / "last.pt").exists() and read_checkpoint(killed / "last.pt")["epoch"] >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    epoch_at_kill = read_checkpoint(killed / "last.pt")["epoch"]
    assert epoch_at_kill < 4, "the run finished before it could be killed"
    monkeypatch.delenv("MOLVAE_NO_PROGRESS")  # the resumed run's bars count on from where it
    capsys.readouterr()  # stopped; in this process too (spares a Python start)
    assert main(_cli_train(killed, "--resume", str(killed / "last.pt"))[3:]) == 0
    bars = re.findall(r"(epoch \d+):\s+\d+%", capsys.readouterr().err)
    assert sorted(set(bars)) == [f"epoch {e}" for e in range(epoch_at_kill + 1, 5)], bars
    a, b = read_checkpoint(full / "last.pt"), read_checkpoint(killed / "last.pt")
    assert b["epoch"] == 4
    for k, v in a["model_state"].items():
        assert torch.equal(v, b["model_state"][k]), k


def test_an_interrupted_training_names_its_resume_command(tmp_path, run_main, monkeypatch):
    """Ctrl-C (KeyboardInterrupt where the program is) in the second epoch: exit 130, and
    the line that continues from the first epoch's checkpoint."""
    import molvae.train as train_module

    real_step, seen = train_module.train_step, []

    def step(loop, *args):
        if loop.epoch >= 1:  # the first epoch is done and saved
            raise KeyboardInterrupt
        seen.append(loop.step)
        return real_step(loop, *args)

    monkeypatch.setattr(train_module, "train_step", step)
    out = tmp_path / "run"
    rc, _, err = run_main(*_cli_train(out)[3:])
    last = out / "last.pt"
    assert rc == 130 and seen and read_checkpoint(last)["epoch"] == 1
    assert f"continue from it with the same command and --resume {last}" in err
    assert err.rstrip().endswith("molvae: interrupted")


def test_training_on_too_little_data_is_one_line_and_leaves_no_folder(tmp_path, run_main):
    one = tmp_path / "one.csv"
    one.write_text("SMILES\nCCO\n")
    out = tmp_path / "new" / "run"
    cache = f'data.cache_dir="{tmp_path / "cache"}"'
    rc, _, err = run_main("train", "--data", one, "--out", out, "--set", cache)
    assert rc == 1 and not out.exists(), err
    assert err.strip() == (f"molvae: error: too few molecules to train on: 1 usable of 1 in {one}, "
                           "1 for training and 0 for validation (data.val_fraction 0.02); a "
                           "model wants thousands")
    rc, _, err = run_main("train", "--data", tmp_path / "none.csv", "--out", out, "--set", cache)
    assert rc == 1 and "none.csv" in err and not out.exists()
    out.mkdir()
    rc, _, _ = run_main("train", "--data", one, "--out", out, "--set", cache)
    assert rc == 1 and out.is_dir()  # a folder the user made stays


def test_resume_rejects_a_different_model(tiny_trained, tmp_path):
    _, result = tiny_trained
    data = DataConfig(path=SHIPPED_TRAIN, limit=1500, cache_dir=tmp_path / "c")
    other = ModelConfig(**{**TINY_MODEL, "latent_size": 4})
    with pytest.raises(CheckpointError, match="model config differs"):
        train_model(data, other, TrainConfig(epochs=4, out_dir=tmp_path / "r"),
                    resume=result.checkpoint)


def test_init_from_fine_tunes_from_the_weights(tiny_trained, tmp_path):
    _, result = tiny_trained
    data = DataConfig(path=SHIPPED_TRAIN, limit=1500, cache_dir=tmp_path / "c")
    common = dict(epochs=1, batch_size=128, lr=3e-3, recon_eval_size=50, threads=1,
                  beta_warmup_steps=20)
    fresh = train_model(data, ModelConfig(**TINY_MODEL),
                        TrainConfig(**common, out_dir=tmp_path / "fresh"))
    tuned = train_model(data, ModelConfig(**TINY_MODEL),
                        TrainConfig(**common, out_dir=tmp_path / "tuned", seed=1,
                                    init_from=result.best_checkpoint))
    assert [h["epoch"] for h in tuned.history] == [1]  # a new run, not a resumed one
    # another training seed (batch order) holds out the same molecules: data.split_seed fixes them
    assert torch.equal(read_checkpoint(tuned.checkpoint)["train_hashes"],
                       read_checkpoint(fresh.checkpoint)["train_hashes"])
    assert tuned.history[0]["val_recon"] < 0.8 * fresh.history[0]["val_recon"]
    assert read_checkpoint(tuned.checkpoint)["train_config"]["init_from"] == str(
        result.best_checkpoint)
    # a fine-tune on other molecules has trained on its start's too: novelty counts both
    moved = DataConfig(path=SHIPPED_TRAIN, limit=1500, cache_dir=tmp_path / "c", split_seed=7)
    other_split = train_model(moved, ModelConfig(**TINY_MODEL),
                              TrainConfig(**{**common, "recon_eval_size": 0}, prior_codes=0,
                                          out_dir=tmp_path / "moved",
                                          init_from=result.best_checkpoint))
    start = read_checkpoint(result.best_checkpoint)["train_hashes"].numpy()
    own = read_checkpoint(fresh.checkpoint)["train_hashes"].numpy()
    both = load_model(other_split.checkpoint).train_hashes
    assert set(start) <= set(both) and 0 < len(np.setdiff1d(both, start)) < 0.1 * len(own)
    other = ModelConfig(**{**TINY_MODEL, "latent_size": 4})
    with pytest.raises(CheckpointError, match="model config differs"):
        train_model(data, other, TrainConfig(**common, out_dir=tmp_path / "x",
                                             init_from=result.best_checkpoint))
    with pytest.raises(CheckpointError):
        train_model(data, ModelConfig(**TINY_MODEL),
                    TrainConfig(**common, out_dir=tmp_path / "y", init_from=tmp_path / "no.pt"))


def test_learning_rate_warms_up_then_decays_to_the_floor(tmp_path):
    assert lr_factor(0, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, 0.1) == pytest.approx(1.0)  # cosine starts at the peak
    assert lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(0, 100, 0, 0.0) == pytest.approx(1.0)  # no warm-up: plain cosine

    class Record:
        def __init__(self):
            self.lrs: list[float] = []

        def on_train_start(self, info): ...
        def on_batch_end(self, step, metrics): self.lrs.append(metrics["lr"])
        def on_epoch_end(self, epoch, metrics): ...
        def on_train_end(self, result): ...

    rec = Record()
    data = DataConfig(path=SHIPPED_TRAIN, limit=1500, cache_dir=tmp_path / "c")
    cfg = TrainConfig(epochs=1, batch_size=128, lr=1e-3, lr_min=1e-5, lr_warmup_steps=4,
                      recon_eval_size=0, prior_codes=0, threads=1, out_dir=tmp_path / "r")
    train_model(data, ModelConfig(**TINY_MODEL), cfg, callbacks=[rec])
    lrs = rec.lrs  # the rate after each optimizer step, i.e. the next step's rate
    assert lrs[:3] == pytest.approx([5e-4, 7.5e-4, 1e-3])
    assert max(lrs) == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-5)
    assert all(a >= b for a, b in zip(lrs[3:-1], lrs[4:], strict=True))


@pytest.mark.slow
def test_fit_to_time_ends_the_decay_as_the_time_budget_runs_out(tmp_path):
    lrs: list[float] = []

    class Record:
        def on_train_start(self, info): ...
        def on_batch_end(self, step, metrics): lrs.append(metrics["lr"])
        def on_epoch_end(self, epoch, metrics): ...
        def on_train_end(self, result): ...

    data = DataConfig(path=SHIPPED_TRAIN, limit=1500, cache_dir=tmp_path / "c")
    common = dict(epochs=10_000, batch_size=64, lr=1e-3, lr_min=1e-5,
                  recon_eval_size=0, prior_codes=0, threads=1)
    for fit, minutes in ((False, 0.03), (True, 0.06)):
        lrs.clear()
        cfg = TrainConfig(**common, max_minutes=minutes, lr_fit_to_time=fit,
                          out_dir=tmp_path / f"r{fit}")
        train_model(data, ModelConfig(**TINY_MODEL), cfg, callbacks=[Record()])
        assert 10 < len(lrs) < 10_000 * 24  # stopped by the clock, far inside the epochs
        if fit:  # the cosine reached (about) its floor as the time ran out (< 2e-4: 71% of
            assert lrs[-1] < 2e-4  # the decay at least, on a machine whose pace changes)
            # and decayed over the run (not strictly: the pace is re-measured every 20
            # steps, and a machine that speeds up stretches the rest of the cosine a little)
            half = len(lrs) // 2
            assert np.mean(lrs[half:]) < 0.6 * np.mean(lrs[10:half])
        else:  # the schedule of 10,000 epochs had hardly begun
            assert lrs[-1] > 9e-4


def test_freeze_encoder_trains_the_decoder_only(tiny_trained, tmp_path):
    _, result = tiny_trained
    data = DataConfig(path=SHIPPED_TRAIN, limit=600, cache_dir=tmp_path / "cache")
    cfg = TrainConfig(epochs=1, batch_size=128, lr=3e-3, out_dir=tmp_path / "ft", threads=1,
                      recon_eval_size=0, prior_codes=0, init_from=result.checkpoint,
                      freeze_encoder=True)
    before = read_checkpoint(result.checkpoint)["model_state"]
    after = read_checkpoint(train_model(data, ModelConfig(**TINY_MODEL), cfg).checkpoint)["model_state"]
    for name, value in after.items():
        same = torch.equal(value, before[name])
        assert same == name.startswith(("encoder.", "latent.")), name


def test_compact_export_half_weights_hashes_apart_fewer_codes(tiny_trained, tmp_path, capsys):
    from molvae.cli import main

    loaded, result = tiny_trained
    dest = tmp_path / "models" / "small.pt"
    assert main(["export", str(result.checkpoint), str(dest), "--half", "--hashes-apart",
                 "--max-codes", "20"]) == 0
    said = capsys.readouterr().out  # both files written are named
    assert f"wrote {dest} (" in said and f"wrote {tmp_path / 'models'}/train_hashes_" in said
    state = torch.load(dest, weights_only=True)
    assert "train_hashes" not in state and state["train_hashes_file"]["count"] == len(loaded.train_hashes)
    assert all(v.dtype == torch.float16 for v in state["model_state"].values() if v.is_floating_point())
    assert len(state["prior"]["mu"]) == 20
    hashes = list((tmp_path / "models").glob("train_hashes_*.npy"))
    assert len(hashes) == 1
    small = load_model(dest)
    assert (small.train_hashes == loaded.train_hashes).all()  # novelty as before
    x = torch.randn(3, TINY_MODEL["latent_size"])
    full = loaded.model.decoder.initial_hidden(x)
    assert torch.allclose(small.model.decoder.initial_hidden(x), full, atol=1e-2)  # fp16-rounded
    # 8-bit codes on a per-dimension grid: within half a step of the float values
    assert main(["export", str(result.checkpoint), str(tmp_path / "models" / "q.pt"),
                 "--codes-8bit", "--width", "1.25", "--refine", "2"]) == 0
    q = load_model(tmp_path / "models" / "q.pt")
    assert q.sampling == {"refine": 2}
    assert main(["export", str(result.checkpoint), str(tmp_path / "models" / "r.pt"),
                 "--refine", "11"]) == 1  # one line: "--refine must be 0-10 passes"
    assert torch.load(tmp_path / "models" / "q.pt", weights_only=True)["prior"]["mu"].dtype == torch.uint8
    assert q.prior["width"] == 1.25
    for k in ("mu", "logvar"):
        step = (loaded.prior[k].max(0).values - loaded.prior[k].min(0).values) / 255
        assert ((q.prior[k] - loaded.prior[k]).abs() <= step / 2 + 1e-4).all()
    # a second model trained on the same data shares the hash file instead of adding one
    assert main(["export", str(result.checkpoint), str(tmp_path / "models" / "b.pt"),
                 "--hashes-apart"]) == 0
    assert len(list((tmp_path / "models").glob("train_hashes_*.npy"))) == 1
    # written to another folder, a model takes the hashes file it names along
    assert main(["export", str(dest), str(tmp_path / "elsewhere" / "c.pt")]) == 0
    assert "copied train_hashes_" in capsys.readouterr().err
    assert (load_model(tmp_path / "elsewhere" / "c.pt").train_hashes == loaded.train_hashes).all()
    hashes[0].unlink()  # without its hash file the model still loads, novelty unknown
    assert load_model(dest).train_hashes is None
    capsys.readouterr()
    assert main(["sample", "--model", str(dest), "-n", "5", "-o", str(tmp_path / "s.csv"),
                 "--set", "score.known_molecules="]) == 0
    assert "novel unknown (no training-set hashes)" in capsys.readouterr().out  # not "100%"
    assert "novel" not in pd.read_csv(tmp_path / "s.csv")  # no column of guesses
    assert main(["sample", "--model", str(dest), "-n", "5", "-o", str(tmp_path / "n.csv"),
                 "--set", 'score.filters=["novelty"]']) == 1  # before any sampling
    assert "has no training-set hashes" in capsys.readouterr().err
    assert not (tmp_path / "n.csv").exists()
    assert main(["evaluate", str(tmp_path / "s.csv"), "--model", str(dest), "--no-fcd",
                 "-o", str(tmp_path / "e.json")]) == 0
    assert "novelty" not in json.loads((tmp_path / "e.json").read_text())
    np.save(hashes[0], np.zeros(3, dtype=np.int64))  # a wrong file is refused
    with pytest.raises(CheckpointError, match="do not match"):
        load_model(dest)


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tiny_trained, tmp_path):
    from molvae.errors import TrainingError

    _, result = tiny_trained
    out = tmp_path / "nan"
    out.mkdir()
    good = read_checkpoint(result.checkpoint)
    torch.save(good, out / "last.pt")
    data = DataConfig(path=SHIPPED_TRAIN, limit=600, cache_dir=tmp_path / "cache")
    cfg = TrainConfig(epochs=1, batch_size=128, lr=1e30, out_dir=out, threads=1, recon_eval_size=0,
                      prior_codes=0, init_from=result.checkpoint, overwrite=True)
    with pytest.raises(TrainingError, match="the loss became .* at step"):
        train_model(data, ModelConfig(**TINY_MODEL), cfg)
    kept = read_checkpoint(out / "last.pt")["model_state"]
    assert all(torch.equal(kept[k], v) for k, v in good["model_state"].items())


def test_a_trained_model_is_not_overwritten_unless_asked(tiny_trained, tmp_path, capsys):
    from molvae.cli import main
    from molvae.errors import TrainingError
    from molvae.train import check_out_dir

    _, result = tiny_trained
    out = result.checkpoint.parent
    before = result.checkpoint.stat().st_mtime_ns
    with pytest.raises(TrainingError, match="already holds a trained model .*--overwrite"):
        check_out_dir(TrainConfig(out_dir=out))
    check_out_dir(TrainConfig(out_dir=out), resume=result.checkpoint)  # continuing it is fine
    check_out_dir(TrainConfig(out_dir=out, overwrite=True))
    assert main(["train", "--out", str(out), "--set", "data.limit=300"]) == 1  # before any work
    assert "already holds a trained model" in capsys.readouterr().err
    assert result.checkpoint.stat().st_mtime_ns == before
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TrainingError, match="cannot write checkpoints there"):
        check_out_dir(TrainConfig(out_dir=blocker / "run"))  # a file as the parent


def test_resume_from_an_inference_export_says_so(tiny_trained, tmp_path):
    _, result = tiny_trained
    small = export_model(result.checkpoint, tmp_path / "small.pt")
    data = DataConfig(path=SHIPPED_TRAIN, limit=1500, cache_dir=tmp_path / "cache")
    cfg = TrainConfig(epochs=4, out_dir=tmp_path / "r", threads=1)
    with pytest.raises(CheckpointError, match="cannot resume from an inference export .*--init-from"):
        train_model(data, ModelConfig(**TINY_MODEL), cfg, resume=small)


def test_checkpoint_writes_are_atomic_and_clean_up_after_killed_writers(tmp_path):
    from molvae.checkpoint import save_checkpoint

    dest = tmp_path / "last.pt"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # a pid now free
    stale = tmp_path / f".last.pt.abc123.tmp{dead}"
    stale.write_bytes(b"")  # what SIGKILL mid-write leaves
    other = tmp_path / "victim.txt"
    other.write_text("keep me")
    (tmp_path / f"last.pt.tmp{os.getpid()}").symlink_to(other)  # the old fixed temp name
    save_checkpoint(dest, {"x": torch.ones(2)})
    assert torch.load(dest, weights_only=True)["x"].sum() == 2
    assert not stale.exists() and other.read_text() == "keep me"
    assert [p.name for p in tmp_path.glob(".last.pt.*")] == []


def test_checkpoints_are_readable_like_any_file_the_user_writes(tmp_path):
    from molvae.checkpoint import save_checkpoint

    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "m.pt", {"x": torch.ones(1)})
    finally:
        os.umask(old)
    assert (tmp_path / "m.pt").stat().st_mode & 0o777 == 0o644


def test_a_fine_tune_on_your_own_file_keeps_the_models_vocabulary_and_config(cvae, tmp_path,
                                                                             test_smiles):
    """`molvae train --data mine.csv --init-from MODEL` with nothing else set: the data is
    encoded in the model's vocabulary (a molecule with other tokens dropped and counted) and
    the model keeps its architecture and conditions (it was 'vocabulary differs')."""
    mine = tmp_path / "mine.csv"
    mine.write_text("SMILES\n" + "\n".join([*test_smiles[:150], "CC[Si](C)(C)C"]) + "\n")
    result = train_model(DataConfig(path=mine, cache_dir=tmp_path / "c"), ModelConfig(),
                         TrainConfig(epochs=1, batch_size=64, out_dir=tmp_path / "ft", threads=1,
                                     recon_eval_size=0, prior_codes=50, init_from=cvae.path))
    state = read_checkpoint(result.checkpoint)
    assert state["vocab"] == cvae.vocab.to_list()
    assert state["model_config"] == cvae.model_config.model_dump(mode="json")
    assert state["info"]["data_unknown_tokens"] >= 1
    assert sample(load_model(result.checkpoint), num_samples=5, workers=1,
                  condition={"logp": 2.0}).valid.all()
    # and resumed the same way, [model] still at its defaults (it was "model config differs")
    resumed = train_model(DataConfig(path=mine, cache_dir=tmp_path / "c"), ModelConfig(),
                          TrainConfig(epochs=2, batch_size=64, out_dir=tmp_path / "ft", threads=1,
                                      recon_eval_size=0, prior_codes=50),
                          resume=result.checkpoint)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    # [model] setting only sample_flag: the model as it is, with the sampler's weights added
    flagged = train_model(DataConfig(path=mine, cache_dir=tmp_path / "c"),
                          ModelConfig(sample_flag=True),
                          TrainConfig(epochs=1, batch_size=64, out_dir=tmp_path / "sf", threads=1,
                                      recon_eval_size=0, prior_codes=0, init_from=cvae.path))
    assert read_checkpoint(flagged.checkpoint)["model_config"] == {
        **cvae.model_config.model_dump(mode="json"), "sample_flag": True}
    with pytest.raises(CheckpointError, match=r"model\.latent_size \(8 there, 4 asked\)"):
        train_model(DataConfig(path=mine, cache_dir=tmp_path / "c"),
                    cvae.model_config.model_copy(update={"latent_size": 4}),
                    TrainConfig(epochs=1, out_dir=tmp_path / "x", init_from=cvae.path))
