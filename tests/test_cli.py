"""The CLI end to end: outputs, and one clear line for every bad input. Some commands run in
subprocesses (the real entry point, a fresh interpreter); the rest go through the CLI's own
entry point, ``main``, in this process, to spare a Python start (~5 s of imports) each."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"


def molvae(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "molvae.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ,
                                                               "MOLVAE_NO_PROGRESS": "1"})


@pytest.fixture
def cli(run_main):
    """``run_main`` for commands that must not hit a bug: a traceback fails the test."""
    from molvae.cli import BUG_LINE

    def run(*args):
        rc, out, err = run_main(*args)
        assert BUG_LINE not in err, err
        return rc, out, err

    return run


def test_help_loads_no_heavy_module():
    # Why --help is fast (0.13 s, see the README's benchmarks); timing it here would be flaky.
    out = subprocess.run([sys.executable, "-m", "molvae.cli", "--help"], capture_output=True,
                         text=True)
    assert out.returncode == 0 and "sample" in out.stdout
    import molvae

    version = subprocess.run([sys.executable, "-m", "molvae.cli", "--version"],
                             capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip() == f"molvae {molvae.__version__}"
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, molvae.cli; molvae.cli.build_parser(); "
         "print(' '.join(sys.modules))"], capture_output=True, text=True).stdout.split()
    assert loaded and not {"torch", "rdkit", "prefect", "mlflow"} & set(loaded)


@pytest.mark.slow
def test_sample_reconstruct_encode_evaluate(tiny_trained, tmp_path, test_smiles, cli):
    _, result = tiny_trained
    m = result.checkpoint
    # in a fresh interpreter: `molvae sample` runs without Prefect, MLflow or flows/
    code = ("import sys; from molvae.cli import main; "
            f"rc = main(['sample', '-n', '50', '--model', {str(m)!r}, "
            f"'-o', {str(tmp_path / 's.parquet')!r}, '--seed', '3']); "
            "print(rc, sorted({m.split('.')[0] for m in sys.modules} "
            "& {'prefect', 'mlflow', 'flows', 'prefect_dask'}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "MOLVAE_NO_PROGRESS": "1"})
    assert r.stdout.strip().splitlines()[-1] == "0 []", r.stderr
    df = pd.read_parquet(tmp_path / "s.parquet")
    assert len(df) == 50 and {"smiles", "selfies", "valid", "unique", "novel", "source", "seed",
                              "step", "qed", "plogp", "pass_pains", "score", "reasons",
                              "nearest_known", "nearest_similarity"} <= set(df.columns)
    assert "seconds: sample" in r.stderr and "nearest" in r.stderr  # stage times
    assert "sampler: stored codes at width 1, tokens drawn at temperature 1" in r.stderr
    ok = df[df.valid]
    assert ok.nearest_similarity.between(0, 1).all() and (ok.nearest_known != "").all()
    ids = [f"ID-{i}" for i in range(21)]  # the input's other columns are kept, row for row
    pd.DataFrame({"id": ids, "SMILES": test_smiles[:20] + ["junk"], "error": "e",
                  "Input": "i", "input_error": "f"}).to_csv(tmp_path / "in.csv", index=False)
    rc, out, err = cli("reconstruct", tmp_path / "in.csv", "--model", m, "-o", tmp_path / "r.csv")
    assert rc == 0 and "exact reconstruction" in out, err
    rec = pd.read_csv(tmp_path / "r.csv", keep_default_na=False)
    assert rec.input.tolist() == test_smiles[:20] + ["junk"] and rec.id.tolist() == ids
    assert (rec.input_error == "e").all() and rec.error.iloc[-1] != ""  # named apart from ours,
    assert (rec.input_Input == "i").all() and (rec.input_input_error == "f").all()  # case apart
    rc, out, err = cli("encode", tmp_path / "in.csv", "--model", m, "-o", tmp_path / "z.npz")
    assert rc == 0, err
    with np.load(tmp_path / "z.npz") as z:  # no allow_pickle needed
        assert z["smiles"].dtype.kind == "U" and len(z["mu"]) == 21
        mu = z["mu"]
    # an extension in capitals is the same format, written under exactly that name
    rc, out, err = cli("encode", tmp_path / "in.csv", "--model", m, "-o", tmp_path / "Z.NPZ")
    assert rc == 0 and [p.name for p in tmp_path.glob("Z.*")] == ["Z.NPZ"], err
    with np.load(tmp_path / "Z.NPZ") as z:
        assert np.array_equal(z["mu"], mu, equal_nan=True)
    rc, out, err = cli("reconstruct", tmp_path / "in.csv", "--model", m, "-o", tmp_path / "R.CSV.GZ")
    assert rc == 0 and pd.read_csv(tmp_path / "R.CSV.GZ", compression="gzip").id.tolist() == ids, err
    rc, out, err = cli("encode", tmp_path / "in.csv", "--model", m, "-o", tmp_path / "z.csv")
    table = pd.read_csv(tmp_path / "z.csv")  # a chemist's spreadsheet
    assert rc == 0 and len(table) == 21 and "elbo" in table and table.id.tolist() == ids, err
    assert np.allclose(table.filter(like="mu_").to_numpy(), mu, atol=1e-6, equal_nan=True)
    # what `molvae sample` writes (a smiles column) is read back without --smiles-column
    rc, out, err = cli("reconstruct", tmp_path / "s.parquet", "--model", m, "-o", tmp_path / "r2.csv")
    assert rc == 0, err
    done, more = map(int, re.search(r"of (\d+) molecules \((\d+) more", out).groups())
    assert done + more == 50
    # a column named in another case is that column; a column it lacks says how to name one
    rc, out, err = cli("reconstruct", tmp_path / "s.parquet", "--smiles-column", "SMILES",
                       "--model", m, "-o", tmp_path / "r3.csv")
    assert rc == 0 and f"of {done} molecules" in out, err
    rc, _, err = cli("reconstruct", tmp_path / "s.parquet", "--smiles-column", "mol")
    assert rc == 1 and "no column 'mol'" in err and "--smiles-column" in err
    rc, out, err = cli("evaluate", tmp_path / "s.parquet", "--reference", tmp_path / "in.csv",
                       "--model", m, "--no-fcd", "-o", tmp_path / "ev.json")
    assert rc == 0, err
    assert (tmp_path / "ev.png").is_file() and "intdiv1" in out
    assert "seconds: score" in err  # stage times
    # --smiles-column names the generated file's column: the reference's error says so
    pd.DataFrame({"mol": ["CCO"]}).to_csv(tmp_path / "nocol.csv", index=False)
    rc, _, err = cli("evaluate", tmp_path / "s.parquet", "--reference", tmp_path / "nocol.csv",
                     "--model", m, "--no-fcd", "-o", tmp_path / "ev2.json")
    assert rc == 1 and "no column 'SMILES'" in err and "--smiles-column" not in err, err
    assert "a --reference file is read by its SMILES column (any case" in err
    rc, _, err = cli("evaluate", tmp_path / "s.parquet", "--model", m, "--no-fcd", "-o",
                     tmp_path / "ev3.json")  # no FCD, so no word of its bias
    assert rc == 0 and "uniqueness@10k is over all of them" in err and "FCD" not in err, err
    (tmp_path / "junk.csv").write_text("SMILES\njunk\nC1CC(\n")
    rc, _, err = cli("evaluate", tmp_path / "s.parquet", "--train", tmp_path / "junk.csv",
                     "--no-fcd", "-o", tmp_path / "ev2.json")
    assert rc == 1 and "the training set has no valid molecule" in err  # not novelty 1.0


@pytest.mark.parametrize("args, msg", [
    (["sample", "-n", "0"], "generate.num_samples: Input should be greater than or equal to 1"),
    (["sample", "-n", "5", "--temperature", "0"], "generate.temperature"),
    (["neighbors", ""], "not a valid molecule"),
    (["neighbors", "C1CC("], "not a valid molecule"),
    (["interpolate", ASPIRIN, "CC[Si](C)(C)C"], "outside the vocabulary: [Si]"),
    (["sample", "-n", "5", "--model", "/nonexistent/model.pt"], "model file not found"),
    (["evaluate", "/nonexistent.csv"], "no such file"),
    (["sample", "-n", "5", "--set", "score.known_molecules=/nonexistent.csv"],
     "score.known_molecules: no such file /nonexistent.csv"),
    (["sample", "-n", "5", "--set", 'score.properties=["colour"]'], "unknown property 'colour'"),
    (["optimize", "--objective", "QED"], "unknown property 'QED': property names are lower case, 'qed'"),
    (["run", "--set", "score.known_molecules=/nonexistent.csv"],
     "score.known_molecules: no such file"),
    (["sample", "-n", "5", "--set", "score.top_max_similarity=0"], "top_max_similarity"),
    (["optimize", "--objective", "colour"], "unknown property"),
    (["sample", "-n", "5", "-o", "out.xlsx"], "must end in .csv, .csv.gz or .parquet"),
    (["run", "--set", "train.epochz=3"], "train.epochz: unknown key"),
    (["run", "--runner", "thread", "--address", "tcp://h:8786"], "cannot go with --runner thread"),
    (["log", "/nonexistent"], "/nonexistent: no such folder"),
    (["log", "/tmp"], "not a molvae run folder (no summary.json)"),
    (["data", "fetch", "zinc"], "unknown dataset 'zinc'"),
    (["data", "sample", "/nonexistent.csv", "out.csv", "-n", "5"], "no such file"),
    (["encode", "/nonexistent.csv", "-o", "z.txt"], "must end in .parquet, .csv, .csv.gz or .npz"),
    (["sample", "-n", "5", "--condition", "logp"], "write NAME=VALUE or NAME=LOW:HIGH"),
    (["sample", "-n", "5", "--condition", "logp=2"], "is not a conditional model"),
    (["sample", "-n", "5", "--guidance", "2"], "--guidance goes with --condition"),
    (["sample", "-n", "5", "--draws", "2"], "--draws goes with --condition"),
    (["sample", "-n", "5", "--steer", "5"], "--steer goes with --condition"),
    (["sample", "-n", "5", "--condition", "logp=2", "--steer", "5"], "is not a conditional model"),
    (["steer", "-o", "s.pt", "--molecules", "10"], "fit on at least 1,000 request draws"),
    (["steer", "-o", "s.pt", "--strength", "101"], "--strength must be 0 to 100"),
    (["steer"], "is a shipped model, not changed in place"),
    (["optimize", "--objective", "qed", "--method", "ga", "--seed-smiles", "CCO"],
     "--seed-smiles: method ga does not use seed molecules"),
    (["sample", "-n", "5", "--model", "."], ".: a folder"),
    (["sample", "-n", "5", "-c", "."], "config file is a folder: ."),
    (["optimize", "--objective", "qed", "--set", f"optimize.seed={2**64}"], "optimize.seed"),
    (["interpolate", "CCO", "--model", "/nonexistent.pt"], "needs at least two molecules"),
    (["sample", "-n", "5", "--prior", "normal", "--prior-width", "2"],
     "with prior normal (z ~ N(0, I)) it would change nothing"),
])
def test_bad_input_is_one_line_and_exit_1(tiny_trained, tmp_path, args, msg, cli, monkeypatch):
    """In this process (the CLI's own entry point, main), to spare a Python start per case."""
    _, result = tiny_trained
    if "--model" not in args and args[0] in ("sample", "neighbors", "interpolate"):
        args = [*args, "--model", str(result.checkpoint)]
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli(*args)
    assert rc == 1  # an uncaught exception (a traceback) fails the test in cli()
    lines = [ln for ln in err.splitlines() if ln.startswith("molvae: error")]
    assert len(lines) == 1 and msg in lines[0], err


def test_a_seed_out_of_range_is_a_usage_error_not_a_traceback(capsys):
    """A seed of 2**64 was an OverflowError inside torch after the model had loaded; now
    argparse refuses it (exit 2, as for every usage error)."""
    from molvae.cli import main

    for args, msg in ((["sample", "-n", "5", "--seed", str(2**64)], "a seed is 0 to 2**63 - 1"),
                      (["prior", "x.csv", "--seed", "-1"], "a seed is 0 to 2**63 - 1"),
                      (["data", "pairs", "-n", "5", "--seed", str(2**63)], "a seed is 0 to"),
                      (["data", "sample", "a.csv", "b.csv", "--seed", "x"], "invalid seed value")):
        with pytest.raises(SystemExit) as stop:
            main(args)
        out, err = capsys.readouterr()
        assert stop.value.code == 2 and f"argument --seed: {msg}" in err and not out, err


def test_interpolate_and_neighbors_from_the_command_line(tiny_trained, tmp_path, cli):
    from molvae.chem import canonical_smiles

    m = str(tiny_trained[1].checkpoint)
    rc, out, err = cli("interpolate", ASPIRIN, "Oc1ccccc1", "--steps", 4, "--model", m,
                       "-o", tmp_path / "i.csv", "--image", tmp_path / "strip.png")
    assert rc == 0 and out.splitlines()[0] == "segment\tt\tsmiles" and len(out.splitlines()) == 5
    assert (tmp_path / "strip.png").is_file() and f"{tmp_path / 'strip.png'}" in err
    path = pd.read_csv(tmp_path / "i.csv", keep_default_na=False)
    # a molecule the model writes back as another is said, not left to the columns
    assert (f"note: the model writes {ASPIRIN}'s code as" in err) == \
        (path.smiles.iloc[0] != canonical_smiles(ASPIRIN))
    rc, _, err = cli("interpolate", ASPIRIN, ASPIRIN, "--steps", 3, "--model", m,
                     "-o", tmp_path / "same.csv")  # one note for a molecule given twice
    assert rc == 0 and err.count(f"note: the model writes {ASPIRIN}'s code as") == \
        (path.smiles.iloc[0] != canonical_smiles(ASPIRIN)), err
    rc, out, err = cli("neighbors", ASPIRIN, "--radii", 0, 0.5, "--per-radius", 3, "--model", m,
                       "-o", tmp_path / "n.csv")
    near = pd.read_csv(tmp_path / "n.csv", keep_default_na=False)
    assert rc == 0 and len(near) == 6 and "radius 0.5: 3 valid" in out, err
    assert (f"note: the model writes {ASPIRIN}'s code as" in err) == \
        (near.smiles.iloc[0] != canonical_smiles(ASPIRIN))


def test_default_outputs_are_checked_before_any_work(tiny_trained, tmp_path, cli, monkeypatch):
    """Each command's default output file, not only one given with -o, is refused before the
    work (a folder in its place here; an unwritable working folder alike)."""
    m = str(tiny_trained[1].checkpoint)
    pd.DataFrame({"smiles": [ASPIRIN, "CCO"]}).to_csv(tmp_path / "in.csv", index=False)
    monkeypatch.chdir(tmp_path)
    for args, default in [(["sample", "-n", "5", "--model", m], "samples.csv"),
                          (["interpolate", ASPIRIN, "CCO", "--model", m], "interpolation.csv"),
                          (["neighbors", ASPIRIN, "--model", m], "neighbors.csv"),
                          (["reconstruct", "in.csv", "--model", m], "reconstructed.csv"),
                          (["evaluate", "in.csv", "--model", m], "evaluation.json"),
                          (["optimize", "--objective", "qed", "--model", m], "optimized.csv")]:
        (tmp_path / default).mkdir()
        rc, out, err = cli(*args)
        assert rc == 1 and f"output '{default}' is a directory" in err, err
        assert "sampler:" not in err and "seconds" not in err and not out, err  # nothing ran
    rc, _, err = cli("evaluate", "in.csv", "-o", "e.txt")
    assert rc == 1 and "must end in .json" in err
    before = (tmp_path / "in.csv").read_bytes()
    for command in ("reconstruct", "encode"):  # -o naming the input file: refused, input kept
        rc, out, err = cli(command, "in.csv", "--model", m, "-o", str(tmp_path / "in.csv"))
        assert rc == 1 and "output " in err and "is the input file" in err and not out, err
    assert (tmp_path / "in.csv").read_bytes() == before


def test_run_checks_its_folders_and_scheduler_before_starting(tmp_path, cli, monkeypatch):
    """One line each, before Prefect or the flow start (they were tracebacks after 13-45 s)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    (tmp_path / "trained").mkdir()
    (tmp_path / "trained" / "best.pt").write_bytes(b"")
    for args, msg in [
        (["--set", 'out_dir="afile/runs"'], "out_dir afile/runs: cannot write run folders there"),
        (["--runner", "dask", "--address", "notanaddress"], "write the scheduler as tcp://HOST:PORT"),
        (["--address", "tcp://127.0.0.1:1"], "no Dask scheduler answers at tcp://127.0.0.1:1"),
        (["--flow", "train", "--set", 'train.out_dir="trained"'],
         "trained already holds a trained model (best.pt)"),
    ]:
        rc, _, err = cli("run", *args)
        lines = [ln for ln in err.splitlines() if ln.startswith("molvae: error")]
        assert rc == 1 and len(lines) == 1 and msg in lines[0], err
        assert "Traceback" not in err and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("env, expected", [(None, 180), ("45", 45)])
def test_prefects_first_start_gets_time(env, expected):
    """On a fresh machine, Prefect's temporary server creates its database on its first start,
    which on a busy 2-core VM missed Prefect's 20 s start-up limit; the flows allow 180 s unless
    the user has set the limit. Checked as Prefect itself reads it, in a fresh interpreter."""
    key = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
    environ = {k: v for k, v in os.environ.items() if k != key} | ({key: env} if env else {})
    code = ("import flows; from prefect.settings import " + key + " as s; print(s.value())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=environ, check=True)
    assert out.stdout.split()[-1] == str(expected)


def test_corrupt_model_and_unreadable_reference(tiny_trained, tmp_path, cli):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 100)
    r = molvae("sample", "-n", 5, "--model", bad)  # a fresh interpreter: no traceback either
    assert r.returncode == 1 and "not a readable molvae checkpoint" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    ref = tmp_path / "ref.csv.gz"
    ref.write_bytes(b"\x1f\x8b\x08\x00garbage")
    gen = tmp_path / "g.csv"
    gen.write_text("smiles\nCCO\n")
    rc, _, err = cli("evaluate", gen, "--reference", ref, "--model", tiny_trained[1].checkpoint)
    assert rc == 1 and "cannot read" in err


@pytest.mark.slow
def test_prior_command_stores_codes_that_sample_uses(tiny_trained, tmp_path, test_smiles, cli):
    import torch

    from molvae.config import SHIPPED_MODEL
    from molvae.train import read_checkpoint

    state = read_checkpoint(tiny_trained[1].checkpoint)
    del state["prior"]
    bare = tmp_path / "bare.pt"
    torch.save(state, bare)
    rc, _, err = cli("sample", "-n", 5, "--model", bare, "--prior", "posterior")
    assert rc == 1 and "stores no posterior codes" in err
    pd.DataFrame({"SMILES": test_smiles[:50]}).to_csv(tmp_path / "train.csv", index=False)
    rc, out, err = cli("prior", tmp_path / "train.csv", "-n", 30, "--model", bare,
                       "-o", tmp_path / "p.pt")
    assert rc == 0 and "stored 30 posterior codes" in out, err
    assert "prior" not in torch.load(bare, weights_only=True)  # -o leaves the source alone
    rc, _, err = cli("sample", "-n", 5, "--model", tmp_path / "p.pt", "--prior", "posterior",
                     "-o", tmp_path / "s.csv")
    assert rc == 0 and len(pd.read_csv(tmp_path / "s.csv")) == 5, err
    assert torch.load(tmp_path / "p.pt", weights_only=True)["prior"]["width"] == 1.0
    rc, out, err = cli("prior", tmp_path / "train.csv", "-n", 30, "--model", bare,
                       "--width", 1.25, "-o", tmp_path / "w.pt")
    assert rc == 0 and "width 1.25" in out, err
    assert torch.load(tmp_path / "w.pt", weights_only=True)["prior"]["width"] == 1.25
    rc, out, err = cli("prior", tmp_path / "train.csv", "-n", 20, "--model", tmp_path / "w.pt")
    assert rc == 0 and "stored 20 posterior codes (width 1.25)" in out, err  # its width kept
    assert torch.load(tmp_path / "w.pt", weights_only=True)["prior"]["width"] == 1.25
    shipped = SHIPPED_MODEL.stat().st_mtime_ns
    rc, _, err = cli("prior", tmp_path / "train.csv", "-n", 20)  # the shipped model by default
    assert rc == 1 and "is a shipped model, not changed in place" in err and "-o" in err
    assert SHIPPED_MODEL.stat().st_mtime_ns == shipped
    rc, _, err = cli("sample", "-n", 5, "--model", tmp_path / "w.pt", "--prior-width", -1)
    assert rc == 1 and "generate.prior_width: Input should be greater than 0" in err
    rc, _, err = cli("prior", tmp_path / "train.csv", "--model", bare, "-o", tmp_path / "p.ckpt")
    assert rc == 1 and "must end in .pt" in err
    rc, _, err = cli("prior", tmp_path / "missing.csv", "--model", bare)
    assert rc == 1 and "molvae: error" in err


def test_nothing_written_is_lost_on_error(tiny_trained, tmp_path, cli):
    out = tmp_path / "keep.csv"
    out.write_text("precious\n")
    rc, _, _ = cli("sample", "-n", 0, "--model", tiny_trained[1].checkpoint, "-o", out)
    assert rc == 1 and out.read_text() == "precious\n"


@pytest.mark.parametrize("args, usage, extra", [
    (["neighbors", "CCO", "c1ccccc1"], "usage: molvae neighbors ", "c1ccccc1"),
    (["data", "sample", "a.csv", "b.csv", "c.csv", "-n", "3"], "usage: molvae data sample ",
     "c.csv"),
])
def test_an_extra_argument_shows_the_usage_of_its_command(run_main, capsys, args, usage, extra):
    """Not the top-level usage (argparse's own answer for an extra positional)."""
    with pytest.raises(SystemExit) as ended:
        run_main(*args)
    err = capsys.readouterr().err
    assert ended.value.code == 2 and err.startswith(usage), err
    assert err.strip().endswith(f"error: unrecognized arguments: {extra}")


def test_a_failed_write_names_the_file_asked_for_not_its_temp_copy(tmp_path):
    """Writes go to a temp file renamed into place; a write that fails there (root on a
    read-only file system, past the up-front check) names the user's path."""
    from molvae.files import atomic_path

    out = tmp_path / "s.csv"
    with pytest.raises(PermissionError) as caught, atomic_path(out) as tmp:
        raise PermissionError(13, "Permission denied", str(tmp))  # as open(tmp, "w") would
    assert caught.value.filename == str(out) and caught.value.strerror == "Permission denied"
    with pytest.raises(OSError) as other, atomic_path(out):
        raise OSError(28, "No space left on device", str(tmp_path / "elsewhere"))
    assert other.value.filename == str(tmp_path / "elsewhere")  # another file's error: as is
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- the error contract


@pytest.mark.parametrize("raised, code, last_line", [
    (ZeroDivisionError("boom"), 1,
     "molvae: this is a bug in molvae; please report it with the traceback above"),
    (KeyboardInterrupt(), 130, "molvae: interrupted"),
])
def test_a_bug_shows_its_traceback_and_asks_for_a_report(tmp_path, monkeypatch, run_main,
                                                         raised, code, last_line):
    import molvae.moses

    def fail(*args, **kwargs):
        raise raised

    monkeypatch.setattr(molvae.moses, "sample_rows", fail)
    (tmp_path / "in.csv").write_text("SMILES\nCCO\n")
    rc, _, err = run_main("data", "sample", tmp_path / "in.csv", tmp_path / "out.csv", "-n", 1)
    assert rc == code
    assert err.strip().splitlines()[-1] == last_line, err
    if code == 1:  # the bug's traceback, ending in the exception, comes first
        assert "Traceback (most recent call last)" in err and "ZeroDivisionError: boom" in err


def test_an_error_a_library_makes_of_a_ctrl_c_is_the_interruption(tmp_path, monkeypatch,
                                                                   run_main):
    """Ctrl-C while pydantic serialized Prefect's settings ended as "a bug": its serializer
    turns the KeyboardInterrupt into an error of its own, unchained. A real SIGINT here,
    turned into an unchained error the same way."""
    import signal
    import time

    import molvae.moses

    def fail(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(10)
        except KeyboardInterrupt:
            pass  # raised below, outside the handler: no __context__, as from Rust code
        raise ValueError("Error calling function `_ser_model`: KeyboardInterrupt")

    monkeypatch.setattr(molvae.moses, "sample_rows", fail)
    (tmp_path / "in.csv").write_text("SMILES\nCCO\n")
    rc, _, err = run_main("data", "sample", tmp_path / "in.csv", tmp_path / "out.csv", "-n", 1)
    assert rc == 130 and err.strip().splitlines()[-1] == "molvae: interrupted", err
    assert "this is a bug" not in err


def test_a_refused_write_is_one_line(tmp_path, run_main):
    """A write the machine refuses (here sysfs, which refuses even root) is the user's to fix:
    one line naming the file, no traceback (refused by the output check before the work where
    the folder reads as unwritable, else by the handler of the write)."""
    (tmp_path / "in.csv").write_text("SMILES\nCCO\nc1ccccc1O\n")
    rc, _, err = run_main("data", "sample", tmp_path / "in.csv", "/sys/molvae_test.csv", "-n", 1)
    lines = [ln for ln in err.splitlines() if ln.startswith("molvae: error")]
    assert rc == 1 and "Traceback" not in err and len(lines) == 1, err
    assert "/sys/molvae_test.csv" in lines[0] and ("denied" in lines[0] or "not writable" in lines[0])


def test_a_table_that_cannot_be_written_after_the_work_is_one_line(tiny_trained, tmp_path,
                                                                    run_main):
    """The output check passes (the folder is writable) and the write itself fails: here
    the temp file it first writes cannot be made (a folder of that name), as a disk that
    fills or a file system that refuses the file would fail it (e.g. /proc)."""
    out = tmp_path / "out.csv"
    (tmp_path / f".out.tmp{os.getpid()}.csv").mkdir()  # atomic_path's temp name, taken
    rc, _, err = run_main("sample", "--model", tiny_trained[1].checkpoint, "-n", 5, "-o", out,
                          "--set", "score.known_molecules=")
    assert rc == 1 and "Traceback" not in err and "this is a bug" not in err, err
    assert err.strip().splitlines()[-1] == f"molvae: error: {out}: cannot write it (Is a directory)"
    assert not out.exists()


def test_data_sample_writes_its_file_whole_or_not_at_all(tmp_path, run_main):
    """molvae data sample writes through a temp file too: a failed write leaves nothing."""
    (tmp_path / "in.csv").write_text("SMILES\nCCO\nc1ccccc1O\n")
    out = tmp_path / "out.csv"
    (tmp_path / f".out.tmp{os.getpid()}.csv").mkdir()  # the temp name, taken
    rc, _, err = run_main("data", "sample", tmp_path / "in.csv", out, "-n", 1)
    assert rc == 1 and "Traceback" not in err and f"{out}: Is a directory" in err, err
    assert not out.exists()
    (tmp_path / f".out.tmp{os.getpid()}.csv").rmdir()
    assert run_main("data", "sample", tmp_path / "in.csv", out, "-n", 1)[0] == 0
    assert len(out.read_text().splitlines()) == 2


def test_a_user_error_is_exactly_one_line(tmp_path, monkeypatch, run_main):
    import molvae.moses
    from molvae.errors import DataError

    def fail(*args, **kwargs):
        raise DataError("in.csv: asked for 5 rows, file has 1\n(second line)")

    monkeypatch.setattr(molvae.moses, "sample_rows", fail)
    (tmp_path / "in.csv").write_text("SMILES\nCCO\n")
    rc, out, err = run_main("data", "sample", tmp_path / "in.csv", tmp_path / "o.csv", "-n", 5)
    assert (rc, out) == (1, "")
    assert err == "molvae: error: in.csv: asked for 5 rows, file has 1 (second line)\n"


# --------------------------------------------------------------------------- what each command loads


def test_only_run_and_log_import_flows_prefect_or_mlflow():
    """Statically: only molvae/cli/run.py names them, and only inside its commands."""
    import ast
    from pathlib import Path

    import molvae.cli

    heavy = {"flows", "prefect", "prefect_dask", "mlflow"}
    for path in Path(molvae.cli.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        top_level = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            if heavy & {n.split(".")[0] for n in names}:
                assert path.name == "run.py" and id(node) not in top_level, (path, names)


# --------------------------------------------------------------------------- flags and the config


@pytest.mark.parametrize("flag, override", [
    (["sample", "--temperature", "0"], ["sample", "--set", "generate.temperature=0"]),
    (["sample", "-n", "-3"], ["sample", "--set", "generate.num_samples=-3"]),
    (["sample", "--prior-width", "0"], ["sample", "--set", "generate.prior_width=0"]),
    (["sample", "--refine", "-1"], ["sample", "--set", "generate.refine=-1"]),
    (["neighbors", "CCO", "--per-radius", "0"],
     ["neighbors", "CCO", "--set", "generate.neighbors_per_radius=0"]),
    (["optimize", "--oracle-budget", "0"], ["optimize", "--set", "optimize.oracle_budget=0"]),
    (["optimize", "--similarity-threshold", "2"],
     ["optimize", "--set", "optimize.similarity_threshold=2"]),
    (["train", "--epochs", "0"], ["train", "--set", "train.epochs=0"]),
    (["data", "prepare", "x.csv", "--max-tokens", "1"],
     ["data", "prepare", "x.csv", "--set", "data.max_tokens=1"]),
])
def test_a_bad_flag_is_refused_like_the_same_override(flag, override, cli):
    """Flags are --set overrides: pydantic refuses both with the same message (the key named),
    before a model or file is opened."""
    rc_flag, _, err_flag = cli(*flag)
    rc_set, _, err_set = cli(*override)
    assert rc_flag == rc_set == 1
    assert err_flag == err_set and err_flag.startswith("molvae: error: 1 invalid config entry: ")
    key = override[-1].split("=")[0]
    assert f"{key}: " in err_flag


@pytest.fixture
def sample_config(monkeypatch, tmp_path, cli):
    """The validated config `molvae sample ARGS` would sample with (the model is never loaded)."""
    import molvae.cli.generate as commands
    from molvae.cli.common import UsageError

    seen, load_run_config = [], commands.load_run_config

    def spy(*args, **kwargs):
        seen.append(load_run_config(*args, **kwargs))
        raise UsageError("stop")

    monkeypatch.setattr(commands, "load_run_config", spy)
    monkeypatch.chdir(tmp_path)

    def run(*args):
        rc, _, err = cli("sample", *args)
        assert rc == 1 and err == "molvae: error: stop\n", err
        return seen.pop().generate

    return run


def test_flags_and_overrides_reach_the_config_the_same_way(sample_config, tmp_path):
    by_flag = sample_config("-n", 12, "--temperature", 0.7, "--greedy", "--prior", "normal",
                            "--max-length", 50, "--prior-width", 1.5)
    by_set = sample_config(*[a for kv in ("num_samples=12", "temperature=0.7", "greedy=true",
                                          'prior="normal"', "max_length=50", "prior_width=1.5")
                             for a in ("--set", f"generate.{kv}")])
    assert by_flag == by_set
    assert (by_flag.num_samples, by_flag.temperature, by_flag.greedy, by_flag.prior) == \
        (12, 0.7, True, "normal")
    # precedence: the command's default (1000) < the file < --set < the flag
    assert sample_config().num_samples == 1000
    (tmp_path / "c.toml").write_text("[generate]\nnum_samples = 7\ntemperature = 0.5\n")
    from_file = sample_config("-c", tmp_path / "c.toml")
    assert (from_file.num_samples, from_file.temperature) == (7, 0.5)
    assert sample_config("-c", tmp_path / "c.toml", "--set", "generate.num_samples=8"
                         ).num_samples == 8
    assert sample_config("--set", "generate.num_samples=8", "-n", 9).num_samples == 9


@pytest.mark.parametrize("argv, message", [
    (["sample", "-n", "2", "-o", ""], "must end in .csv, .csv.gz or .parquet"),
    (["sample", "-n", "2", "--model", ""], "--model is empty"),
    (["interpolate", "CCO", "CCN", "--image", "strip.xlsx"], "must end in .png"),
    (["sample", "-n", "2", "-o", "{tmp}/afile/out.csv"], "a parent of it is a file"),
    (["sample", "-n", "2", "--temperature", "inf"], "generate.temperature"),
    (["neighbors", "CCO", "--radii", "nan"], "generate.neighbor_radii"),
])
def test_bad_outputs_and_values_are_refused_before_any_work(tmp_path, run_main, argv, message):
    (tmp_path / "afile").write_text("")
    rc, out, err = run_main(*[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert rc == 1 and message in err and len(err.strip().splitlines()) == 1, err


def _children(ppid: int, word: str) -> list[int]:
    """Pids of the children of ``ppid`` whose command lines hold ``word`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[1]) == ppid and word in command:  # fields[1]: the parent
            found.append(int(stat.parent.name))
    return found


def _gone(pid: int, within: float = 10.0) -> bool:
    import time

    deadline = time.time() + within
    while time.time() < deadline:
        try:
            state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":  # exited, waiting to be reaped
            return True
        time.sleep(0.1)
    return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
# Ctrl-C to the whole group (a terminal's) is not a case here: it ended in ~2 s with exit 130
# in 14 of 15 tries by hand (it always hung before the server had its own session), but one
# try hung, unexplained yet, and a suite must not hang; see docs/reliability.md.
@pytest.mark.parametrize("how", ["SIGTERM to molvae"])
def test_a_stopped_run_stops_and_its_prefect_server_too(tiny_trained, tmp_path, how):
    """SIGTERM (a supervisor) or a terminal's Ctrl-C (SIGINT to every process of the group):
    the run ends as interrupted, not as a bug (Ctrl-C used to reach the Prefect server too,
    and the flow's last report to it failed), and nothing of it is left running."""
    import signal
    import time

    env = {**os.environ, "MOLVAE_NO_PROGRESS": "1", "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)  # its own temporary Prefect server, a child process
    runs, log = tmp_path / "runs", tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "molvae.cli", "run", "--flow", "optimize",
             "--model", str(tiny_trained[1].checkpoint), "--set", f'out_dir="{runs}"',
             "--set", "tracking.enabled=false", "--set", "optimize.oracle_budget=1000000"],
            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr,
            text=True)
    try:
        deadline = time.time() + 120
        while "] optimizing (cmaes" not in log.read_text() and time.time() < deadline:
            time.sleep(0.2)  # the flow runs (its server is up) and has reached the optimizer
        assert proc.poll() is None, log.read_text()[-2000:]
        # one Prefect server: the one `molvae run` started early, which the flow runs against
        servers = _children(proc.pid, "uvicorn")
        assert len(servers) == 1
        if how.startswith("SIGTERM"):
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=90)
        err = log.read_text()
        code, word = (143, "terminated") if how.startswith("SIGTERM") else (130, "interrupted")
        assert proc.returncode == code and f"molvae: {word}" in err, err[-3000:]
        assert "this is a bug" not in err
        assert "molvae run: the optimize flow" in err and "] optimizing (cmaes" in err  # stages
        assert _gone(servers[0])  # its server stops as it exits
        deadline = time.time() + 10
        while time.time() < deadline and _group_alive(proc.pid):
            time.sleep(0.1)
        with pytest.raises(ProcessLookupError):  # nothing of its process group is left
            os.killpg(proc.pid, 0)
    finally:
        for pid in _children(proc.pid, "uvicorn"):
            os.kill(pid, signal.SIGKILL)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_signal_inside_the_import_machinery_comes_again_outside_it():
    """A SIGTERM that would raise inside Python's import machinery (where it can leave the
    import lock held: a `molvae run` hung) is raised 50 ms later instead, elsewhere."""
    import signal
    import time

    from molvae.cli import Terminated, _terminate
    from molvae.cli.common import outside_imports

    where = {}  # a frame of the import machinery, as the handler sees one
    exec(compile("import sys\ndef here():\n    return sys._getframe()\n",
                 "<frozen importlib._bootstrap>", "exec"), where)
    guarded = outside_imports(_terminate)
    previous = signal.signal(signal.SIGTERM, guarded)
    try:
        assert guarded(signal.SIGTERM, where["here"]()) is None  # not raised there
        with pytest.raises(Terminated):  # but again, here
            time.sleep(5)
        with pytest.raises(Terminated):  # anywhere else, at once
            guarded(signal.SIGTERM, sys._getframe())
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_signal_inside_a_finalizer_comes_again_outside_it():
    """A SIGTERM that would raise inside a ``__del__`` (the garbage collector finalizing an
    asyncio transport: Python prints the exception and drops it, and a `molvae run` went
    on until killed) is raised 50 ms later instead, outside it."""
    import signal
    import time

    from molvae.cli import Terminated, _terminate
    from molvae.cli.common import outside_imports

    guarded = outside_imports(_terminate)
    seen = []

    class Transport:
        def __del__(self):
            seen.append(guarded(signal.SIGTERM, _inner()))  # a call deeper down, too

    def _inner():
        return sys._getframe()

    previous = signal.signal(signal.SIGTERM, guarded)
    try:
        Transport()  # finalized at once: the handler sees a frame inside its __del__
        assert seen == [None]  # not raised there (it would have been dropped)
        with pytest.raises(Terminated):  # but again, here
            time.sleep(5)
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_the_early_prefect_server_ends_when_its_starter_is_killed(tmp_path):
    """kill -9 of `molvae run` runs no cleanup: the server's watchdog ends it."""
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    code = ("import os, signal, time; from flows import server; server.start(); "
            "print(server._EARLY[0][1].pid, flush=True); time.sleep(1); "
            "os.kill(os.getpid(), signal.SIGKILL)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    pid = int(out.stdout.split()[0])
    assert _gone(pid), f"the server {pid} outlived the process that started it"


@pytest.mark.timeout(150)
def test_log_to_an_unreachable_server_is_one_line_after_a_short_retry(tmp_path, run_main,
                                                                      monkeypatch):
    """MLflow's default retries take minutes per request; the CLI sets a short budget (a
    value the user set wins). The timeout guards the budget; the line is the contract."""
    from molvae.cli.run import MLFLOW_RETRIES

    for key in MLFLOW_RETRIES:
        monkeypatch.delenv(key, raising=False)  # restored after the test
    folder = tmp_path / "optimize-x"
    folder.mkdir()
    (folder / "summary.json").write_text("{}")
    rc, _, err = run_main("log", folder, "--set", 'tracking.tracking_uri="http://127.0.0.1:9"')
    assert rc == 1 and err.startswith("molvae: error: cannot reach MLflow at http://127.0.0.1:9")
    assert err.rstrip().endswith("log it to another store with --set tracking.tracking_uri=URI")
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"


def test_run_with_a_missing_model_is_one_line_and_leaves_no_run_folder(tmp_path, run_main):
    rc, _, err = run_main("run", "--model", tmp_path / "nosuch.pt",
                          "--set", f'out_dir="{tmp_path / "runs"}"')
    assert rc == 1 and err.strip() == f"molvae: error: {tmp_path / 'nosuch.pt'}: model file not found"
    assert not (tmp_path / "runs").exists()


def test_the_run_summary_shows_each_conditional_request(tmp_path, capsys):
    from molvae.cli.run import print_summary

    print_summary({"out_dir": str(tmp_path), "cond0_hit": 0.0, "cond0_novel_hit": 0.0,
                   "cond0_mae_logp": 1.8, "cond0_mae_tpsa": 19.06, "cond1_hit": 0.86,
                   "cond1_novel_hit": 0.48, "cond1_mae_logp": 0.3586}, 3.0)
    out = capsys.readouterr().out
    assert "  request 0: hit 0.0%, novel hits 0.0%, MAE logp 1.8 tpsa 19.1\n" in out
    assert "  request 1: hit 86.0%, novel hits 48.0%, MAE logp 0.359\n" in out
    print_summary({"out_dir": str(tmp_path), "cond0_hit": 0.5}, 3.0)  # a model without hashes
    assert "  request 0: hit 50.0%, novel hits unknown\n" in capsys.readouterr().out


def test_a_description_without_novelty_says_unknown():
    from flows.review import describe

    text = describe("pipeline", {"scored_candidates": 10, "validity": 1.0, "filters": 0.9,
                                 "fcd": 1.0, "top_similar_skipped": 2}, "m.pt", None)
    assert "novelty unknown (not in the model's training set)" in text and "nan" not in text
    import pandas as pd

    text = describe("pipeline", {"top_similar_skipped": 2}, "m.pt", pd.DataFrame({"score": [0.9]}))
    assert "An unknown number of training molecules and 2 near-duplicates" in text


# --------------------------------------------------------------------------- session 24's probe


def test_the_configs_model_is_the_commands_model(tiny_trained, tmp_path, cli):
    """``model_path`` in -c FILE or --set reaches every command, not only `molvae run` (the
    shipped model was used without a word); --model still wins."""
    _, result = tiny_trained  # unconditional: a request to it is refused
    cfg = tmp_path / "mine.toml"
    cfg.write_text(f'model_path = "{result.checkpoint}"\n')
    rc, _, err = cli("sample", "-c", cfg, "-n", 5, "--condition", "logp=2", "-o", tmp_path / "a.csv")
    assert rc == 1 and "is not a conditional model" in err
    rc, _, err = cli("sample", "--set", f'model_path="{result.checkpoint}"', "-n", 5,
                     "--condition", "logp=2", "-o", tmp_path / "b.csv")
    assert rc == 1 and "is not a conditional model" in err
    rc, _, err = cli("sample", "-c", cfg, "-n", 5, "--set", 'score.known_molecules=""',
                     "-o", tmp_path / "c.csv")
    assert rc == 0, err  # "" skips the nearest-known lookup (it was "no such file .")
    assert "nearest_known" not in pd.read_csv(tmp_path / "c.csv").columns


def test_data_sample_never_overwrites_its_source_or_writes_a_misnamed_file(tmp_path, cli,
                                                                           test_smiles):
    src = tmp_path / "mols.csv"
    pd.DataFrame({"SMILES": test_smiles[:30]}).to_csv(src, index=False)
    before = src.read_bytes()
    rc, _, err = cli("data", "sample", src, src, "-n", 5)
    assert rc == 1 and "is the file sampled from" in err and src.read_bytes() == before
    rc, _, err = cli("data", "sample", src, tmp_path / "s.parquet", "-n", 5)
    assert rc == 1 and "reads and writes CSV" in err and not (tmp_path / "s.parquet").exists()
    (tmp_path / "mols.sdf").write_text("x\n")
    rc, _, err = cli("data", "sample", tmp_path / "mols.sdf", tmp_path / "s.csv", "-n", 1)
    assert rc == 1 and "reads and writes CSV" in err


def test_files_without_one_usable_molecule_are_errors(tiny_trained, tmp_path, cli):
    _, result = tiny_trained
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"smiles": ["hello", "C1CC", ""]}).to_csv(bad, index=False)  # lowercase column
    for command in (["reconstruct", bad, "-o", tmp_path / "r.csv"],
                    ["encode", bad, "-o", tmp_path / "e.parquet"], ["data", "index", bad]):
        rc, _, err = cli(*command, *(["--model", result.checkpoint] if command[0] != "data" else []))
        assert rc == 1 and "none of its 3" in err, (command, err)
    assert not (tmp_path / "r.csv").exists()


def test_a_molecule_longer_than_the_decoder_writes_is_an_error_row(tiny_trained, tmp_path, cli):
    """It was 'reconstructed' as whatever fitted in the decoder's length, with no error."""
    _, result = tiny_trained
    mols = tmp_path / "m.csv"
    pd.DataFrame({"SMILES": [ASPIRIN, "C" * 150]}).to_csv(mols, index=False)
    rc, out, err = cli("reconstruct", mols, "--model", result.checkpoint, "-o", tmp_path / "r.csv")
    assert rc == 0, err
    df = pd.read_csv(tmp_path / "r.csv", keep_default_na=False)
    assert "longer than the 100 the decoder writes" in df.error[1] and df.reconstructed[1] == ""
    assert "of 1 molecules (1 more could not be encoded or are too long" in out


def test_evaluate_takes_a_smiles_column_and_notes_a_small_set(tmp_path, cli, test_smiles):
    gen = tmp_path / "g.csv"
    pd.DataFrame({"Smiles": test_smiles[:40]}).to_csv(gen, index=False)
    rc, _, err = cli("evaluate", gen, "--smiles-column", "Smiles", "--no-fcd", "--train", gen,
                     "-o", tmp_path / "e.json")
    assert rc == 0, err
    assert "40 molecules: uniqueness@10k is over all of them" in err


def test_an_error_ends_the_progress_bar_line_first():
    """A command that fails mid-bar printed its error at the end of the bar's line."""
    import io

    from tqdm import tqdm

    from molvae.cli import _close_bars

    stream = io.StringIO()
    bar = tqdm(total=10, desc="decoding", file=stream)
    bar.update(3)
    _close_bars()
    assert stream.getvalue().endswith("\n") and bar.disable


@pytest.mark.slow
def test_molecules_cut_at_max_length_are_said(tiny_trained, tmp_path, cli):
    """--max-length 3 cut every molecule to a 3-token one, valid (SELFIES decode any prefix)
    and reported as 100% valid without a word."""
    rc, _, err = cli("sample", "-n", 20, "--max-length", 3, "--model", tiny_trained[1].checkpoint,
                     "--set", 'score.known_molecules=""', "-o", tmp_path / "c.csv")
    df = pd.read_csv(tmp_path / "c.csv", keep_default_na=False)
    cut = int((df.selfies.str.count(r"\[") >= 3).sum())
    assert rc == 0 and cut > 0 and \
        f"note: {cut} of 20 molecules reached --max-length (3 tokens)" in err, err


def test_a_warning_during_a_progress_bar_gets_its_own_line(tiny_trained, tmp_path):
    """``--unique`` that falls short says so, on a line of its own (the warning was written
    at the end of the bar's line, where a reader, or grep, missed it)."""
    _, result = tiny_trained
    env = {k: v for k, v in os.environ.items() if k != "MOLVAE_NO_PROGRESS"}
    r = subprocess.run([sys.executable, "-m", "molvae.cli", "sample", "-n", "60", "--unique",
                        "--max-length", "2", "--model", str(result.checkpoint), "--set",
                        'score.known_molecules=""', "-o", str(tmp_path / "u.csv")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.replace("\r", "\n").splitlines()
    assert any(line.startswith("WARNING molvae.generate: only ") for line in lines), r.stderr
