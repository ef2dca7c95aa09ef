import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from molvae import metrics

A, B, C = "CC(=O)Oc1ccccc1C(=O)O", "Oc1ccccc1", "CCN(CC)CC"


def test_simple_metrics_on_known_lists():
    assert metrics.validity([A, "bad", B, ""]) == 0.5
    assert metrics.uniqueness([A, A, B, ""]) == pytest.approx(2 / 3)
    assert metrics.uniqueness([A, B, C, A], k=2) == 1.0
    assert metrics.novelty([A, B, B], lambda xs: np.array([x != A for x in xs])) == 0.5


def test_internal_diversity_by_hand():
    assert metrics.internal_diversity([A, A, A]) == pytest.approx(0.0)
    fa = metrics._fp_matrix([A, B])
    inter = fa[0] @ fa[1]
    t = inter / (fa[0].sum() + fa[1].sum() - inter)
    assert metrics.internal_diversity([A, B]) == pytest.approx(1 - (2 + 2 * t) / 4)
    assert metrics.internal_diversity([A, B], p=2) == pytest.approx(1 - ((2 + 2 * t * t) / 4) ** 0.5)


def test_tanimoto_metrics_match_rdkit_pairwise(test_smiles):
    from rdkit import DataStructs

    from molvae import chem

    gen, ref = test_smiles[:40], test_smiles[40:100]
    fps = {s: chem.fingerprint(chem.to_mol(s), 2, 1024) for s in gen + ref}
    sims = np.array([DataStructs.BulkTanimotoSimilarity(fps[a], [fps[b] for b in gen])
                     for a in gen])
    assert metrics.internal_diversities(gen) == pytest.approx(
        (1 - sims.mean(), 1 - np.sqrt((sims**2).mean())), abs=1e-6)
    fp = metrics._fp_matrix(gen)
    assert metrics._intdiv(fp, block=7) == pytest.approx(metrics._intdiv(fp), abs=1e-6)  # 6 blocks
    best = [max(DataStructs.BulkTanimotoSimilarity(fps[a], [fps[b] for b in ref])) for a in gen]
    assert metrics.snn(gen, ref) == pytest.approx(np.mean(best), abs=1e-6)
    # rows past one block of the pairwise matrix
    assert [sl for sl, _ in metrics._tanimoto_blocks(np.ones((5, 8), np.float32),
                                                     np.ones((3, 8), np.float32), block=2)
            ] == [slice(0, 2), slice(2, 4), slice(4, 5)]
    with pytest.raises(ValueError, match="p = 1 or 2"):
        metrics.internal_diversity(gen, p=3)


def test_shipped_reference_rows_are_current(test_smiles):
    """The rows shipped for the MOSES test and training samples equal a fresh computation
    (a changed RDKit or property code would make them stale)."""
    from tests.conftest import SHIPPED_TRAIN

    train = pd.read_csv(SHIPPED_TRAIN, nrows=2000)["SMILES"].tolist()
    def same(shipped, fresh):
        for a, b in zip(shipped, fresh, strict=False):
            assert a.keys() == b.keys()
            assert [a[k] for k in a if k not in metrics.PLOT_PROPERTIES] == [
                b[k] for k in b if k not in metrics.PLOT_PROPERTIES]  # SMILES, fragments, ...
            assert [a[p] for p in metrics.PLOT_PROPERTIES] == pytest.approx(
                [b[p] for p in metrics.PLOT_PROPERTIES])

    shipped = metrics.reference_rows(train, with_fragments=False)
    assert len(shipped) == 2000
    same(shipped, metrics.eval_rows(train[:30], with_fragments=False, workers=1,
                                    with_filter=False))
    shipped = metrics.reference_rows([s for s in test_smiles if s])
    assert len(shipped) == len(test_smiles)
    same(shipped, metrics.eval_rows(test_smiles[:60], with_fragments=True, workers=1,
                                    with_filter=False))
    # SNN's reference side, shipped beside the FCD statistics: read, not computed (no cache
    # given), and equal to fresh fingerprints
    canon = [r["smiles"] for r in shipped if r["valid"]]
    assert (metrics.DATA_DIR / f"snn_ref_{metrics._content_key(canon)}.npz").is_file()
    fps = metrics._reference_fingerprints(canon, None)
    assert np.array_equal(fps[:200], metrics._fp_matrix(canon[:200]))


def test_snn_and_wasserstein():
    assert metrics.snn([A, B], [A, B, C]) == pytest.approx(1.0)
    assert metrics.snn([A], [C]) < 0.3
    assert metrics.wasserstein([1, 2, 3], [1, 2, 3]) == 0
    assert metrics.wasserstein([0, 0], [1, 1]) == 1


@pytest.mark.slow
def test_evaluate_against_a_reference(test_smiles, tmp_path):
    gen = test_smiles[:150] + ["bad", ""]
    seen: dict[str, list[int]] = {}

    def progress(stage, total):
        seen[stage] = [total, 0]
        return lambda k: seen[stage].__setitem__(1, seen[stage][1] + k)

    m, gen_rows, ref_rows = metrics.evaluate(gen, test_smiles[150:450], lambda xs: np.ones(len(xs)),
                                             with_fcd=True, cache_dir=tmp_path, workers=2,
                                             progress=progress)
    assert seen == {"score": [152, 152], "FCD": [150, 150]}  # every molecule counted once
    assert m["validity"] == pytest.approx(150 / 152)
    assert m["uniqueness@1k"] == 1.0 and m["novelty"] == 1.0
    # MOSES IntDiv includes self-pairs: ~0.846 on 150 molecules, ~0.857 on MOSES test.
    assert 0.8 < m["intdiv1"] < 0.9 and m["filters"] > 0.9
    assert 0.9 < m["frag"] <= 1 and 0 < m["scaf"] <= 1 and 0.2 < m["snn"] < 0.6
    assert 0 < m["fcd"] < 30  # small sets carry a large bias; separation: test below
    assert m["w_qed"] < 0.05 and m["heavy_atoms_ge10"] == 1.0
    # the reference side's FCD statistics and SNN fingerprints are cached (SNN read back:
    # the same figure; the FCD statistics read back: test_fcd_separates_distributions)
    assert len(list(tmp_path.glob("fcd_ref_*.npz"))) == len(list(tmp_path.glob("snn_ref_*.npz"))) == 1
    again, _, _ = metrics.evaluate(gen, test_smiles[150:450], with_fcd=False, cache_dir=tmp_path,
                                   workers=1, generated_rows=gen_rows)
    assert again["snn"] == pytest.approx(m["snn"])
    png = metrics.plot_distributions(gen_rows, ref_rows, tmp_path / "p.png")
    assert png.stat().st_size > 1000
    with pytest.raises(ValueError, match="no generated"):
        metrics.evaluate([], test_smiles[:10])
    with pytest.raises(ValueError, match="reference set is empty"):
        metrics.evaluate([A], [])


@pytest.mark.slow
def test_fcd_separates_distributions(test_smiles, tmp_path):
    same = metrics.fcd(test_smiles[:300], test_smiles[300:600], cache_dir=tmp_path)
    alkanes = ["C" * n for n in range(5, 35)] * 10
    assert metrics.fcd(alkanes, test_smiles[300:600], cache_dir=tmp_path) > same + 10


@pytest.mark.timeout(120)
def test_degenerate_inputs_end_by_rule_not_by_hanging(test_smiles, tmp_path):
    """FCD of one molecule used to spin forever in scipy's sqrtm."""
    from molvae.errors import MetricsError

    with pytest.raises(MetricsError, match="at least 2 distinct valid molecules"):
        metrics.fcd(["CCO"], test_smiles[:50])
    # two identical molecules: no covariance either (scipy's singular-matrix warnings and a
    # meaningless number before)
    with pytest.raises(MetricsError, match="at least 2 distinct valid molecules.*got 1 generated"):
        metrics.fcd(["CCO", "CCO"], test_smiles[:50])
    m, _, _ = metrics.evaluate(["CCO", "OCC"], test_smiles[:50], with_fragments=False)
    assert np.isnan(m["fcd"]) and m["validity"] == 1.0
    m, _, _ = metrics.evaluate(["CCO", "not a molecule"], test_smiles[:50], with_fragments=False)
    assert m["validity"] == 0.5 and np.isnan(m["fcd"])
    assert np.isnan(m["intdiv1"]) and m["snn"] > 0  # diversity needs two molecules
    # nothing valid: every metric but validity is undefined (NaN; null in JSON), not 0
    m, gen, ref = metrics.evaluate(["junk", "C1CC("], test_smiles[:50], lambda s: [True] * len(s),
                                   with_fcd=False)
    assert m["validity"] == 0.0 and m["n"] == 2
    for key in ("uniqueness@1k", "filters", "intdiv1", "snn", "frag", "scaf", "novelty"):
        assert np.isnan(m[key]), key
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the plot of nothing divided by zero
        metrics.plot_distributions(gen, ref, tmp_path / "p.png")
    with pytest.raises(MetricsError, match="no valid molecule"):
        metrics.evaluate(["CCO", "CCN"], ["junk", "C1CC"], with_fcd=False)


FORK_BESIDE = """
import sys, threading, time
import numpy as np
from molvae import chem, metrics, parallel
product = metrics.torch_matmul if sys.argv[1] == "metrics" else np.matmul
rng = np.random.default_rng(0)
fp = (rng.random((3000, 1024)) < 0.04).astype(np.float32)
fp[:, :40] = rng.random((3000, 40)) < 0.5  # bits in most molecules: the dense product
counts = chem.BitCounts.of(fp)
stop = time.time() + 2
def products():
    while time.time() < stop:
        counts(fp[:1000], matmul=product)
thread = threading.Thread(target=products)
thread.start()
forks = 0
while time.time() < stop:  # what a flow's main thread does beside its evaluation task
    with parallel.pool(2) as p:
        p.map(abs, range(4))
    forks += 1
thread.join()
print("forked", forks)
"""


def test_the_metrics_dense_product_does_not_hang_a_fork_from_another_thread():
    """A flow evaluates (IntDiv, SNN: ``chem.BitCounts`` with metrics' dense product) in one
    thread while another forks worker processes. With numpy's product (OpenBLAS) the fork
    and the product hung each other (`make run`, and this script, every time); torch's
    does not."""
    done = subprocess.run([sys.executable, "-c", FORK_BESIDE, "metrics"], capture_output=True,
                          text=True, timeout=60)  # a hang: TimeoutExpired, the test fails
    assert done.returncode == 0 and "forked" in done.stdout, done.stderr[-2000:]
