"""The CLI end to end: outputs, and one clear line for every bad input. Some commands run in
subprocesses (the real entry point, a fresh interpreter); the rest go through the CLI's own
entry point, ``main``, in this process, to spare a Python start (~5 s of imports) each."""

import os
import subprocess
import sys

import pandas as pd
import pytest

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"


def molvae(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "flows.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env={**__import__("os").environ,
                                                               "MOLVAE_NO_PROGRESS": "1"})


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run ``main(args)`` in this process: (exit code, stdout, stderr). An uncaught
    exception (a traceback) fails the test."""
    from flows.cli import main

    monkeypatch.setenv("MOLVAE_NO_PROGRESS", "1")

    def run(*args):
        capsys.readouterr()
        rc = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return rc, out, err

    return run


def test_help_loads_no_heavy_module():
    # Why --help is fast (0.13 s, see the README's benchmarks); timing it here would be flaky.
    out = subprocess.run([sys.executable, "-m", "flows.cli", "--help"], capture_output=True,
                         text=True)
    assert out.returncode == 0 and "sample" in out.stdout
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, flows.cli; flows.cli.build_parser(); "
         "print(' '.join(sys.modules))"], capture_output=True, text=True).stdout.split()
    assert loaded and not {"torch", "rdkit", "prefect", "mlflow"} & set(loaded)


def test_sample_reconstruct_encode_evaluate(tiny_trained, tmp_path, test_smiles, cli):
    _, result = tiny_trained
    m = result.checkpoint
    r = molvae("sample", "-n", 50, "--model", m, "-o", tmp_path / "s.parquet", "--seed", 3)
    assert r.returncode == 0, r.stderr
    df = pd.read_parquet(tmp_path / "s.parquet")
    assert len(df) == 50 and {"smiles", "selfies", "valid", "unique", "novel", "source", "seed",
                              "step", "qed", "plogp", "pass_pains", "score"} <= set(df.columns)
    pd.DataFrame({"SMILES": test_smiles[:20] + ["junk"]}).to_csv(tmp_path / "in.csv", index=False)
    rc, out, err = cli("reconstruct", tmp_path / "in.csv", "--model", m, "-o", tmp_path / "r.csv")
    assert rc == 0 and "exact reconstruction" in out, err
    rec = pd.read_csv(tmp_path / "r.csv", keep_default_na=False)
    assert rec.input.tolist() == test_smiles[:20] + ["junk"]
    rc, out, err = cli("encode", tmp_path / "in.csv", "--model", m, "-o", tmp_path / "z.npz")
    assert rc == 0, err
    rc, out, err = cli("evaluate", tmp_path / "s.parquet", "--reference", tmp_path / "in.csv",
                       "--model", m, "--no-fcd", "-o", tmp_path / "ev.json")
    assert rc == 0, err
    assert (tmp_path / "ev.png").is_file() and "intdiv1" in out


@pytest.mark.parametrize("args, msg", [
    (["sample", "-n", "0"], "positive"),
    (["sample", "-n", "5", "--temperature", "0"], "temperature"),
    (["neighbors", ""], "not a valid molecule"),
    (["neighbors", "C1CC("], "not a valid molecule"),
    (["interpolate", ASPIRIN, "CC[Si](C)(C)C"], "outside the vocabulary: [Si]"),
    (["sample", "-n", "5", "--model", "/nonexistent/model.pt"], "model file not found"),
    (["evaluate", "/nonexistent.csv"], "no such file"),
    (["optimize", "--objective", "colour"], "unknown property"),
    (["sample", "-n", "5", "-o", "out.xlsx"], "must end in .csv or .parquet"),
    (["run", "--set", "train.epochz=3"], "train.epochz: unknown key"),
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


def test_prior_command_stores_codes_that_sample_uses(tiny_trained, tmp_path, test_smiles, cli):
    import torch

    from molvae.train import read_checkpoint

    state = read_checkpoint(tiny_trained[1].checkpoint)
    del state["prior"]
    bare = tmp_path / "bare.pt"
    torch.save(state, bare)
    r = molvae("sample", "-n", 5, "--model", bare, "--prior", "posterior")
    assert r.returncode == 1 and "stores no posterior codes" in r.stderr
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
    rc, _, err = cli("sample", "-n", 5, "--model", tmp_path / "w.pt", "--prior-width", -1)
    assert rc == 1 and "width must be > 0" in err
    rc, _, err = cli("prior", tmp_path / "train.csv", "--model", bare, "-o", tmp_path / "p.ckpt")
    assert rc == 1 and "must end in .pt" in err
    rc, _, err = cli("prior", tmp_path / "missing.csv", "--model", bare)
    assert rc == 1 and "molvae: error" in err


def test_nothing_written_is_lost_on_error(tiny_trained, tmp_path):
    out = tmp_path / "keep.csv"
    out.write_text("precious\n")
    r = molvae("sample", "-n", 0, "--model", tiny_trained[1].checkpoint, "-o", out)
    assert r.returncode == 1 and out.read_text() == "precious\n"
