"""The CLI end to end in subprocesses: outputs, and one clear line for every bad input."""

import subprocess
import sys

import pandas as pd
import pytest

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"


def molvae(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "flows.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env={**__import__("os").environ,
                                                               "MOLVAE_NO_PROGRESS": "1"})


def test_help_loads_no_heavy_module():
    # Why --help is fast (0.13 s, see the README's benchmarks); timing it here would be flaky.
    out = subprocess.run([sys.executable, "-m", "flows.cli", "--help"], capture_output=True,
                         text=True)
    assert out.returncode == 0 and "sample" in out.stdout
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, flows.cli; flows.cli.build_parser(); "
         "print(' '.join(sys.modules))"], capture_output=True, text=True).stdout.split()
    assert loaded and not {"torch", "rdkit", "prefect", "mlflow"} & set(loaded)


def test_sample_reconstruct_encode_evaluate(tiny_trained, tmp_path, test_smiles):
    _, result = tiny_trained
    m = result.checkpoint
    r = molvae("sample", "-n", 50, "--model", m, "-o", tmp_path / "s.parquet", "--seed", 3)
    assert r.returncode == 0, r.stderr
    df = pd.read_parquet(tmp_path / "s.parquet")
    assert len(df) == 50 and {"smiles", "selfies", "valid", "unique", "novel", "source", "seed",
                              "step", "qed", "plogp", "pass_pains", "score"} <= set(df.columns)
    pd.DataFrame({"SMILES": test_smiles[:20] + ["junk"]}).to_csv(tmp_path / "in.csv", index=False)
    r = molvae("reconstruct", tmp_path / "in.csv", "--model", m, "-o", tmp_path / "r.csv")
    assert r.returncode == 0 and "exact reconstruction" in r.stdout
    rec = pd.read_csv(tmp_path / "r.csv", keep_default_na=False)
    assert rec.input.tolist() == test_smiles[:20] + ["junk"]
    r = molvae("encode", tmp_path / "in.csv", "--model", m, "-o", tmp_path / "z.npz")
    assert r.returncode == 0, r.stderr
    r = molvae("evaluate", tmp_path / "s.parquet", "--reference", tmp_path / "in.csv", "--model",
               m, "--no-fcd", "-o", tmp_path / "ev.json")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ev.png").is_file() and "intdiv1" in r.stdout


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
def test_bad_input_is_one_line_and_exit_1(tiny_trained, tmp_path, args, msg, capsys,
                                          monkeypatch):
    """In this process (the CLI's own entry point, main), to spare a Python start per case;
    the tests around it run the CLI in subprocesses."""
    from flows.cli import main

    _, result = tiny_trained
    if "--model" not in args and args[0] in ("sample", "neighbors", "interpolate"):
        args = [*args, "--model", str(result.checkpoint)]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MOLVAE_NO_PROGRESS", "1")
    assert main(args) == 1  # an uncaught exception (a traceback) fails the test here
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("molvae: error")]
    assert len(lines) == 1 and msg in lines[0], err


def test_corrupt_model_and_unreadable_reference(tiny_trained, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 100)
    r = molvae("sample", "-n", 5, "--model", bad)
    assert r.returncode == 1 and "not a readable molvae checkpoint" in r.stderr
    ref = tmp_path / "ref.csv.gz"
    ref.write_bytes(b"\x1f\x8b\x08\x00garbage")
    gen = tmp_path / "g.csv"
    gen.write_text("smiles\nCCO\n")
    r = molvae("evaluate", gen, "--reference", ref, "--model", tiny_trained[1].checkpoint)
    assert r.returncode == 1 and "cannot read" in r.stderr and "Traceback" not in r.stderr


def test_prior_command_stores_codes_that_sample_uses(tiny_trained, tmp_path, test_smiles, capsys,
                                                     monkeypatch):
    monkeypatch.setenv("MOLVAE_NO_PROGRESS", "1")
    import torch

    from molvae.train import read_checkpoint

    state = read_checkpoint(tiny_trained[1].checkpoint)
    del state["prior"]
    bare = tmp_path / "bare.pt"
    torch.save(state, bare)
    r = molvae("sample", "-n", 5, "--model", bare, "--prior", "posterior")
    assert r.returncode == 1 and "stores no posterior codes" in r.stderr
    pd.DataFrame({"SMILES": test_smiles[:50]}).to_csv(tmp_path / "train.csv", index=False)
    r = molvae("prior", tmp_path / "train.csv", "-n", 30, "--model", bare, "-o", tmp_path / "p.pt")
    assert r.returncode == 0 and "stored 30 posterior codes" in r.stdout, r.stderr
    assert "prior" not in torch.load(bare, weights_only=True)  # -o leaves the source alone
    r = molvae("sample", "-n", 5, "--model", tmp_path / "p.pt", "--prior", "posterior",
               "-o", tmp_path / "s.csv")
    assert r.returncode == 0 and len(pd.read_csv(tmp_path / "s.csv")) == 5, r.stderr
    assert torch.load(tmp_path / "p.pt", weights_only=True)["prior"]["width"] == 1.0
    r = molvae("prior", tmp_path / "train.csv", "-n", 30, "--model", bare, "--width", 1.25,
               "-o", tmp_path / "w.pt")
    assert r.returncode == 0 and "width 1.25" in r.stdout, r.stderr
    assert torch.load(tmp_path / "w.pt", weights_only=True)["prior"]["width"] == 1.25
    # bad input, through the CLI's entry point in this process (an uncaught exception fails)
    from flows.cli import main

    capsys.readouterr()
    assert main(["sample", "-n", "5", "--model", str(tmp_path / "w.pt"), "--prior-width", "-1"]) == 1
    assert "width must be > 0" in capsys.readouterr().err
    assert main(["prior", str(tmp_path / "train.csv"), "--model", str(bare),
                 "-o", str(tmp_path / "p.ckpt")]) == 1
    assert "must end in .pt" in capsys.readouterr().err
    assert main(["prior", str(tmp_path / "missing.csv"), "--model", str(bare)]) == 1
    assert "molvae: error" in capsys.readouterr().err


def test_nothing_written_is_lost_on_error(tiny_trained, tmp_path):
    out = tmp_path / "keep.csv"
    out.write_text("precious\n")
    r = molvae("sample", "-n", 0, "--model", tiny_trained[1].checkpoint, "-o", out)
    assert r.returncode == 1 and out.read_text() == "precious\n"
