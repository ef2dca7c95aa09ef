"""Shared fixtures: a tiny trained model (seconds), the shipped model, temp stores."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parent.parent
SHIPPED_TRAIN = REPO / "data" / "moses_train_100k.csv.gz"
SHIPPED_TEST = REPO / "data" / "moses_test_10k.csv.gz"
SHIPPED_MODEL = REPO / "data" / "model" / "molvae_moses_cvae.pt"  # the default model



def pytest_configure(config):
    """One torch thread per test process under xdist (make test: two processes, two
    cores): the tests' many tiny tensor ops run ~4x slower when each process's intra-op
    threads wait for a core the other process holds (see molvae.parallel.torch_threads).
    The controller (or a run without xdist) starts the flow tests' Prefect server."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
    elif _runs_flow_tests(config):
        _start_prefect_server()


TEST_PREFECT_API = "MOLVAE_TEST_PREFECT_API_URL"


def _runs_flow_tests(config) -> bool:
    paths = [Path(str(a).split("::")[0]) for a in config.args] or [Path(".")]
    return any(p.name == "test_flows.py" or (p / "test_flows.py").is_file()
               or (p / "tests" / "test_flows.py").is_file() for p in paths)


def _start_prefect_server() -> None:
    """One Prefect server for every test process's flow tests (each started its own: ~12 s
    of a core apiece), booting while the workers start and collect: `molvae run`'s own
    early server (``flows.server``), on a database in a temporary folder, gone at exit
    (its watchdog ends it with this process). The workers find it by TEST_PREFECT_API."""
    import atexit
    import shutil
    import tempfile

    if os.environ.get(TEST_PREFECT_API) or os.environ.get("PREFECT_API_URL"):
        return
    home = tempfile.mkdtemp(prefix="molvae-test-prefect-")
    atexit.register(shutil.rmtree, home, True)  # after the server stops (atexit: last in, first out)
    previous = os.environ.get("PREFECT_HOME")
    os.environ["PREFECT_HOME"] = home  # read as Prefect is imported, next
    try:
        from flows import server

        if url := server.start():
            os.environ[TEST_PREFECT_API] = url
    finally:
        if previous is None:
            del os.environ["PREFECT_HOME"]
        else:
            os.environ["PREFECT_HOME"] = previous


TINY_MODEL = {"embedding_size": 16, "encoder_hidden_size": 32, "latent_size": 8,
              "decoder_hidden_size": 64}


def _built_once(tmp_path_factory, name: str, build):
    """``build(folder)`` once for all test processes of a run (pytest-xdist's workers share
    the parent of their temp folders): the first process builds under a file lock, the
    others wait and read its pickled result; the files it wrote are shared, read-only by
    convention like any session fixture's."""
    import pickle

    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    done = root / f"{name}.pkl"
    with FileLock(str(done) + ".lock"):
        if done.is_file():
            return pickle.loads(done.read_bytes())
        result = build(root / name)
        done.write_bytes(pickle.dumps(result))
        return result


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory):
    """A tiny VAE trained for a few epochs on 1,500 shipped molecules (a few seconds)."""
    from molvae.checkpoint import load_model
    from molvae.config import DataConfig, ModelConfig, TrainConfig
    from molvae.train import train_model

    def build(tmp: Path):
        data = DataConfig(path=SHIPPED_TRAIN, limit=1500, cache_dir=tmp / "cache")
        train = TrainConfig(epochs=3, batch_size=128, lr=3e-3, out_dir=tmp / "run",
                            recon_eval_size=50, threads=1, beta_warmup_steps=20)
        return train_model(data, ModelConfig(**TINY_MODEL), train)

    result = _built_once(tmp_path_factory, "tiny", build)
    return load_model(result.checkpoint), result


@pytest.fixture(scope="session")
def cvae(tiny_trained, tmp_path_factory):
    """The tiny model fine-tuned into a conditional one (logP, QED) for two epochs."""
    from molvae.checkpoint import load_model
    from molvae.config import DataConfig, ModelConfig, TrainConfig
    from molvae.train import train_model

    def build(tmp: Path):
        return train_model(
            DataConfig(path=SHIPPED_TRAIN, limit=1500, cache_dir=tmp / "cache"),
            ModelConfig(**TINY_MODEL, conditions=["logp", "qed"]),
            TrainConfig(epochs=2, batch_size=128, lr=1e-3, out_dir=tmp / "run",
                        recon_eval_size=20, threads=1, init_from=tiny_trained[1].checkpoint,
                        prior_codes=500))

    return load_model(_built_once(tmp_path_factory, "cvae", build).checkpoint)


@pytest.fixture(scope="session")
def steered(cvae, tmp_path_factory):
    """The tiny conditional model with a steering head fitted on 1,500 of its request draws
    (one pass), stored at strength 7."""
    from molvae.checkpoint import load_model
    from molvae.steering_fit import collect, fit, store

    def build(tmp: Path):
        draws = collect(cvae, 1500, seed=0, workers=1)
        head, report = fit(cvae, draws, epochs=1, batch_size=64, seed=0, threads=1)
        return store(cvae.path, tmp.with_suffix(".pt"), head, draws["names"], 7, report)

    return load_model(_built_once(tmp_path_factory, "steered", build))


@pytest.fixture(scope="session")
def tiny(tiny_trained):
    return tiny_trained[0]


@pytest.fixture(scope="session")
def shipped():
    from molvae.checkpoint import load_model

    if not SHIPPED_MODEL.is_file():
        pytest.fail(f"the shipped model {SHIPPED_MODEL} is missing")
    return load_model(SHIPPED_MODEL)


@pytest.fixture(scope="session")
def test_smiles():
    import pandas as pd

    return pd.read_csv(SHIPPED_TEST)["SMILES"].tolist()


@pytest.fixture(scope="session")
def chemprop_model(tmp_path_factory):
    """A small chemprop v2 model of logP trained on 400 shipped molecules (its file)."""
    pytest.importorskip("chemprop")
    from chemprop import data, featurizers, models, nn
    from lightning import pytorch as pl
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    from molvae import chem
    from molvae.config import SHIPPED_TRAIN
    from molvae.data import read_molecules

    smiles = [s for s in read_molecules(SHIPPED_TRAIN, limit=400).smiles if s]
    logp = [chem.properties(chem.to_mol(s), ["logp"])["logp"] for s in smiles]
    points = [data.MoleculeDatapoint.from_smi(s, [v]) for s, v in zip(smiles, logp, strict=True)]
    ds = data.MoleculeDataset(points, featurizers.SimpleMoleculeMolGraphFeaturizer())
    scaler = ds.normalize_targets()
    ffn = nn.RegressionFFN(input_dim=64, hidden_dim=64,
                           output_transform=nn.UnscaleTransform.from_standard_scaler(scaler))
    model = models.MPNN(nn.BondMessagePassing(d_h=64), nn.MeanAggregation(), ffn)
    pl.seed_everything(0, verbose=False)
    with warnings.catch_warnings():
        # Lightning's note that there is no validation set. Not only noise: a warning a worker
        # records travels to the xdist controller, which imports its class's module to rebuild
        # it (lightning, torch, dynamo, sympy: ~8 s of a core, the worker's results behind it).
        warnings.simplefilter("ignore", PossibleUserWarning)
        pl.Trainer(max_epochs=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False
                   ).fit(model, data.build_dataloader(ds, batch_size=64, num_workers=0, seed=0))
    path = tmp_path_factory.mktemp("chemprop") / "logp.pt"
    models.save_model(path, model)
    return path


@pytest.fixture
def run_main(capsys, monkeypatch):
    """Run ``main(args)`` in this process: (exit code, stdout, stderr)."""
    from molvae.cli import main

    monkeypatch.setenv("MOLVAE_NO_PROGRESS", "1")

    def run(*args):
        capsys.readouterr()
        rc = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return rc, out, err

    return run
