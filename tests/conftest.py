"""Shared fixtures: a tiny trained model (seconds), the shipped model, temp stores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parent.parent
SHIPPED_TRAIN = REPO / "data" / "moses_train_100k.csv.gz"
SHIPPED_TEST = REPO / "data" / "moses_test_10k.csv.gz"
SHIPPED_MODEL = REPO / "data" / "model" / "molvae_moses.pt"

TINY_MODEL = {"embedding_size": 16, "encoder_hidden_size": 32, "latent_size": 8,
              "decoder_hidden_size": 64}


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory):
    """A tiny VAE trained for a few epochs on 1,500 shipped molecules (a few seconds)."""
    from molvae.checkpoint import load_model
    from molvae.config import DataConfig, ModelConfig, TrainConfig
    from molvae.train import train_model

    tmp = tmp_path_factory.mktemp("tiny")
    data = DataConfig(path=SHIPPED_TRAIN, limit=1500, cache_dir=tmp / "cache")
    model = ModelConfig(**TINY_MODEL)
    train = TrainConfig(epochs=3, batch_size=128, lr=3e-3, out_dir=tmp / "run",
                        recon_eval_size=50, threads=1, beta_warmup_steps=20)
    result = train_model(data, model, train)
    return load_model(result.checkpoint), result


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
