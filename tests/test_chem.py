import math
import sys
from pathlib import Path

import numpy as np
import pytest

from molvae import chem
from molvae.config import DesirabilityTerm

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
RHODANINE = "O=C1NC(=S)SC1=Cc1ccccc1"  # a PAINS (ene_rhod) hit


def test_to_mol_contract():
    assert chem.to_mol(ASPIRIN) is not None
    for bad in ["", None, "C1CC", "not a smiles", "C(C)(C)(C)(C)C"]:
        assert chem.to_mol(bad) is None


def test_canonical_and_standardize():
    assert chem.canonical_smiles("OC(=O)c1ccccc1OC(C)=O") == ASPIRIN
    assert chem.canonical_smiles("xyz") is None
    assert chem.canonical_smiles("CC(=O)[O-].[Na+]", standardize=True) == "CC(=O)O"


def test_exact_properties_of_aspirin():
    p = chem.properties(chem.to_mol(ASPIRIN))
    assert p["mw"] == pytest.approx(180.159, abs=1e-3)
    assert p["logp"] == pytest.approx(1.3101, abs=1e-4)
    assert p["qed"] == pytest.approx(0.5501, abs=1e-4)
    assert p["sa"] == pytest.approx(1.58, abs=1e-2)
    assert p["tpsa"] == pytest.approx(63.6)
    assert (p["hbd"], p["hba"], p["rotatable_bonds"], p["heavy_atoms"]) == (1, 3, 2, 13)
    assert p["fsp3"] == pytest.approx(1 / 9)
    # JT-VAE penalized logP by hand: standardized logP + (-SA) + (-ring penalty).
    expected = ((1.3101 - 2.4570953) / 1.4343244 + (-p["sa"] + 3.0525811) / 0.8335207
                + (0 + 0.0485697) / 0.2860212)
    assert p["plogp"] == pytest.approx(expected, abs=1e-3)
    assert set(p) == set(chem.PROPERTIES)


def test_long_ring_penalty():
    assert chem.long_ring_penalty(chem.to_mol("C1CCCCCCCC1")) == 3
    assert chem.long_ring_penalty(chem.to_mol("c1ccccc1")) == 0


def test_filters_on_known_molecules():
    asp, rho = chem.to_mol(ASPIRIN), chem.to_mol(RHODANINE)
    assert chem.FILTERS["pains"](asp) and not chem.FILTERS["pains"](rho)
    assert chem.FILTERS["moses"](asp) and not chem.FILTERS["moses"](rho)
    assert not chem.FILTERS["moses"](chem.to_mol("C[N+](C)(C)C"))  # charged
    assert not chem.FILTERS["moses"](chem.to_mol("CC[Si](C)(C)C"))  # atom not allowed
    assert not chem.FILTERS["lipinski"](chem.to_mol("C" * 40 + "c1ccccc1"))  # MW, logP
    assert chem.FILTERS["veber"](asp)


# Molecules that fail the MOSES SMARTS (no charge, no big ring): decoded model samples.
SMARTS_FAILURES = ["COC=CC=C(C)C=NOC(=CC=NN(C)C=O)N(C)C", "N#CC1=CC(=O)C=C1",
                   "COC(=O)NN(C)C(=O)c1cccnc1-c1ccccc1F", "C=CCNC(=O)C=C1Oc2cc(N)cnc2S1",
                   "CCCCc1ccc(OC(=N)N=CN=CCN2CCNC2)s1", "N=CC1COCCN1CC1(CCNC2=CC=CCC2)CC1"]


# Catalog and QED-alert hits, explicit hydrogens (QED's H-removal path), a metal, charges.
ODD = [RHODANINE, "C=CC(=O)OC", "O=Cc1ccccc1", "[H]OC(=O)c1ccccc1[H]", "C[Se]c1ccccc1",
       "C[N+](C)(C)C", "CC(=O)[O-].[Na+]", "OO", "C1CCCCCCC1", "ClC(Cl)(Cl)C=O", "C" * 45]


def test_panel_equals_the_straightforward_computation(test_smiles):
    """Shared intermediates and screened catalogs change no value: every property and
    filter of ``score_one`` equals RDKit's own functions run one by one (FilterCatalog,
    QED.qed, every MOSES SMARTS) on test molecules, decoded-looking failures and odd ones.
    ``benchmarks/scoring.py --check`` runs the same comparison on 20,000 molecules."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from panel_reference import FILTERS, reference_row

    windows = {"mw": (150.0, 600.0), "heavy_atoms": (10, 60)}
    for s in test_smiles[:120] + SMARTS_FAILURES + ODD:
        want = reference_row(s, windows)
        got = chem.score_one(s, [*FILTERS, "windows"], windows, reasons=True)
        reasons, smiles = got.pop("reasons"), got.pop("smiles")
        assert smiles == want.pop("smiles") and set(got) == set(want), s
        assert got == pytest.approx(want, rel=1e-9, nan_ok=True), s
        failed = [f for f in [*FILTERS, "windows"] if got.get(f"pass_{f}") is False]
        assert [r.split(":")[0] for r in reasons.split("; ") if r] == (
            failed if got["valid"] else ["not a molecule"]), s


def test_alert_sets_screen_without_changing_answers(test_smiles):
    """Each screened alert set names exactly the queries that match when every query is
    tried, in the set's order."""
    from rdkit import Chem
    from rdkit.Chem import QED

    from molvae.chem import alerts

    sets = [(alerts.catalog_alerts(n), False) for n in alerts.CATALOGS]
    sets += [(alerts.moses_rules(), True), (alerts.qed_alerts(), False)]
    assert len(alerts.catalog_alerts("pains").names) == 480
    assert not alerts.catalog_alerts("nih").unscreened  # all read out and screened
    assert len(alerts.qed_alerts().names) == len(QED.StructuralAlerts)
    for s in test_smiles[:40] + SMARTS_FAILURES + ODD:
        mol = chem.to_mol(s)
        for aset, with_h in sets:
            m = Chem.AddHs(mol) if with_h else mol
            every = [n for n, q in zip(aset.names, aset.queries, strict=True)
                     if m.HasSubstructMatch(q)] + [n for n, e in aset.unscreened
                                                   if e.HasFilterMatch(m)]
            assert aset.matches(m) == every, (s, every)
            assert aset.matches(m, first_only=True) == every[:1]
            if with_h:  # screened by the H-less molecule's bits, matched on the H form
                assert aset.matches(mol, target=lambda m=m: m) == every, (s, every)
        # one memo for the sets matched against the H-less molecule: same answers, and a
        # query two sets share (Brenk and QED's alerts: phenol esters, ...) asked once
        memo: dict = {}
        for aset, with_h in sets:
            if not with_h:
                assert aset.matches(mol, memo=memo) == aset.matches(mol), s
    brenk, qed = alerts.catalog_alerts("brenk"), alerts.qed_alerts()
    assert len(set(brenk.keys) & set(qed.keys)) >= 80
    aspirin = chem.to_mol(ASPIRIN)
    assert brenk.matches(aspirin) == ["phenol_ester"]
    assert brenk.matches(aspirin, memo=dict.fromkeys(brenk.keys, False)) == []  # memo read
    assert alerts.moses_rules().keys[0].startswith("H:")  # the H form never shares answers


def test_kind_screen_counts_what_a_match_needs():
    """A query atom's options are the kinds (element, aromatic or not, charge sign) it can
    match, none for an atom that could be anything or a hydrogen; a query needing more atoms
    of a set of kinds than the molecule has is never tried, one within it always is."""
    from rdkit import Chem

    from molvae.chem import alerts, screen

    def options(smarts):
        return [sorted(int(k) for k in np.flatnonzero(o))
                for o in screen.query_options(Chem.MolFromSmarts(smarts))]

    n = 7
    assert options("[#44]") == [[44, 44 + 128, 44 + 256, 44 + 384, 44 + 512, 44 + 640]]
    assert options("n") == [[n + 128, n + 128 + 256, n + 128 + 512]]
    assert options("[N;H1]") == options("N") == [[n, n + 256, n + 512]]
    assert options("[N,O;+]") == [[n + 256, 8 + 256]]
    assert options("[!#6]") == options("[$(C=O)]") == options("[#1]") == options("[C,#1]") == []
    assert options("[c;!$(c=O)]") == options("c")
    assert len(options("[Cl,Br,I].[Cl,Br,I]")) == 2
    pyridine = screen.ScreenKey.of(chem.to_mol("c1ccncc1CN"))
    assert dict(zip(pyridine.kinds.tolist(), pyridine.counts.tolist(), strict=True)) == {
        6: 1, n: 1, 6 + 128: 5, n + 128: 1}

    def tried(*smarts):
        aset = alerts._make([(s, Chem.MolFromSmarts(s)) for s in smarts])
        return [smarts[i] for i in aset.candidates(pyridine)]

    assert tried("nc", "[#7]~*~*~[#7]", "[#8]", "NC", "[N,O]C") == ["nc", "[#7]~*~*~[#7]", "NC", "[N,O]C"]
    assert tried("n~*~n", "[Cl,Br]", "[N;+]", "[#7].[#7].[#7]", "[N,n].[N,n]") == ["[N,n].[N,n]"]
    # a relaxed bundle: a query needs what its least demanding alternative needs
    assert tried("[$(C=O),$(C(=O)S)]", "[$(C=O),$(CN)]") == ["[$(C=O),$(CN)]"]


def test_reasons_name_the_alert_and_the_value():
    row = chem.score_one(RHODANINE, [*chem.FILTERS, "windows"], {"mw": (250, 600)},
                         reasons=True)
    assert "pains: ene_rhod_A(235)" in row["reasons"]
    assert "moses: PAINS:ene_rhod_A(235)" in row["reasons"]
    assert "windows: mw 221 < 250" in row["reasons"]
    big = chem.score_one("C" * 40 + "c1ccccc1", ["lipinski", "veber"], reasons=True)
    assert big["reasons"] == "lipinski: MW 639 > 500, logP 17.07 > 5; veber: rotatable bonds 39 > 10"
    assert chem.score_one(ASPIRIN, reasons=True)["reasons"] == "brenk: phenol_ester"
    assert chem.score_one(ASPIRIN, ["pains", "nih", "moses"], reasons=True)["reasons"] == ""
    assert chem.score_one("garbage", reasons=True)["reasons"] == "not a molecule"
    assert "reasons" not in chem.score_one(ASPIRIN)


def test_only_the_named_properties_are_computed():
    row = chem.score_one(ASPIRIN, ["lipinski"], {"heavy_atoms": (10, 60)}, ["qed"])
    assert set(row) == {"smiles", "valid", "qed", "pass_lipinski"}
    assert row["qed"] == pytest.approx(0.5501, abs=1e-4)


def test_moses_alerts_name_the_rule():
    assert chem.moses_alerts(chem.to_mol(ASPIRIN)) == []
    assert chem.moses_alerts(chem.to_mol("C1CCCCCCC1")) == ["ring>=8"]
    assert chem.moses_alerts(chem.to_mol("C[N+](C)(C)C")) == ["charge"]
    assert chem.moses_alerts(chem.to_mol("CC[Si](C)(C)C")) == ["atom:Si"]
    assert chem.moses_alerts(chem.to_mol(RHODANINE))[0].startswith("PAINS:ene_rhod")
    assert chem.moses_alerts(chem.to_mol("N#CC1=CC(=O)C=C1")) == ["PAINS:ene_cyano_E(1)"]
    assert chem.moses_alerts(chem.to_mol("C=CC#N")) == ["MCF1"]  # acyclic C=C-C#N
    assert chem.moses_alerts(chem.to_mol("C1CCCCCCC1[Si]C"), first_only=True) == ["ring>=8"]
    # the charge and atom rules as the atom-by-atom reading: isotopes, aromatic atoms, H,
    # zwitterions, the dummy atom and several odd elements at once
    from rdkit import Chem

    for smiles, want in [("[2H]C([2H])Cl", []), ("c1ccsc1", []), ("[H]OC", []),
                         ("[O-][N+](=O)c1ccccc1", ["charge"]),
                         ("*CC", ["atom:*"]), ("C[Se]P(C)C", ["atom:P", "atom:Se"]),
                         ("[NH4+].[B-](F)(F)(F)F", ["charge", "atom:B"])]:
        mol = Chem.MolFromSmiles(smiles)
        assert [a for a in chem.moses_alerts(mol) if a == "charge" or a.startswith("atom:")
                ] == want, smiles


def test_batch_rows_equal_the_single_functions(test_smiles):
    """Batch scoring reuses QED's MW and logP and feeds Lipinski from the row: same values."""
    smiles = test_smiles[:20] + ["C" * 40 + "c1ccccc1"]
    for s, row in zip(smiles, chem.score_smiles(smiles, workers=1), strict=True):
        mol = chem.to_mol(s)
        assert row == pytest.approx({**row, **chem.properties(mol)}, nan_ok=True)
        for f, fn in chem.FILTERS.items():
            assert row[f"pass_{f}"] == fn(mol), (s, f)


def test_batch_scoring_marks_bad_rows_and_keeps_order():
    rows = chem.score_smiles([ASPIRIN, "garbage", None, "c1ccccc1"] * 100, workers=2,
                             windows={"mw": (100, 200)}, filters=[*chem.FILTERS, "windows"],
                             chunk_size=50)
    assert len(rows) == 400
    assert [r["valid"] for r in rows[:4]] == [True, False, False, True]
    assert rows[0]["smiles"] == ASPIRIN and rows[1]["smiles"] == ""
    assert math.isnan(rows[1]["qed"]) and rows[1]["pass_moses"] is False
    assert rows[0]["pass_windows"] and not rows[3]["pass_windows"]  # benzene MW 78


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="unknown filter"):
        chem.score_smiles([ASPIRIN], filters=["nonsense"])
    with pytest.raises(ValueError, match="unknown property"):
        chem.score_smiles([ASPIRIN], property_names=["colour"])


def test_desirability_and_composite():
    assert chem.desirability(0.9, "maximize", 0.3, 0.9) == 1.0
    assert chem.desirability(0.6, "maximize", 0.3, 0.9) == pytest.approx(0.5)
    assert chem.desirability(3.5, "minimize", 2, 5) == pytest.approx(0.5)
    assert chem.desirability(2.0, "window", 1, 3) == 1.0
    assert chem.desirability(4.0, "window", 1, 3) == pytest.approx(0.5)
    assert chem.desirability(float("nan"), "window", 1, 3) == 0.0
    terms = [DesirabilityTerm(property="qed", low=0.3, high=0.9),
             DesirabilityTerm(property="sa", kind="minimize", low=2, high=5)]
    assert chem.composite_score({"qed": 0.6, "sa": 3.5}, terms) == pytest.approx(0.5)
    assert chem.composite_score({"qed": 0.1, "sa": 1}, terms) == 0.0
    with pytest.raises(ValueError):
        DesirabilityTerm(property="qed", low=1, high=1)


def test_similarity():
    assert chem.tanimoto(ASPIRIN, ASPIRIN) == 1.0
    assert chem.tanimoto(ASPIRIN, "bad") is None
    sims = chem.bulk_tanimoto(ASPIRIN, [ASPIRIN, "c1ccccc1", "bad"])
    assert sims[0] == 1.0 and 0 < sims[1] < 0.5 and sims[2] is None


PATHOLOGICAL = {
    "C60": "C12=C3C4=C5C6=C1C7=C8C9=C1C%10=C%11C(=C29)C3=C2C3=C4C4=C5C5=C9C6=C7C6=C7C8=C1C1=C8C%10"
           "=C%10C%11=C2C2=C3C3=C4C4=C9C5=C5C6=C6C7=C1C1=C8C7=C%10C2=C3C2=C7C1=C6C5=C42",
    "60-residue peptide": "".join("NC(CC(C)C)C(=O)" for _ in range(60)) + "O",
    "20 fused rings": "C1CC2CC3CC4CC5CC6CC7CC8CC9CC%10CC%11CC%12CC%13CC%14CC%15CC%16CC%17CC%18"
                      "CC%19CC%20CCCC%20C%19C%18C%17C%16C%15C%14C%13C%12C%11C%10C9C8C7C6C5C4C3C2C1",
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_molecules_are_scored_not_stalled(name):
    """Cages, huge chains and fused systems go through the whole panel (measured: under
    0.4 s each on one core; the timeout guards against a stall, it is not a speed test)."""
    row = chem.score_smiles([PATHOLOGICAL[name]], workers=1)[0]
    assert row["valid"] and row["heavy_atoms"] >= 58 and "pass_pains" in row


def test_one_atom_recursive_smarts_are_written_inline_only_where_they_mean_the_same():
    from rdkit import Chem

    from molvae.chem.alerts import inline_atoms

    assert inline_atoms("[$([#44]),$([se])]") == "[#44,se]"
    assert inline_atoms("[$([C&H1&$(C-F)]),$(C(F)F)]") == "[C&H1&$(C-F),$(C(F)F)]"
    for same in ("[!$([C&H2])]", "[$([C,N])]", "[$([C;H2])]", "[$([C]C)]", "C[$(CO)]"):
        assert inline_atoms(same) == same
    metal = Chem.MolFromSmarts("[$([#44]),$([se]),$([#34])]")
    plain = Chem.MolFromSmarts(inline_atoms("[$([#44]),$([se]),$([#34])]"))
    for s in ("C[Se]c1ccccc1", "c1cc[se]c1", "CCO", "[Ru]"):
        mol = Chem.MolFromSmiles(s)
        assert mol.HasSubstructMatch(metal) == mol.HasSubstructMatch(plain)


def test_relaxed_smarts_drop_recursion_and_never_miss_a_match(test_smiles):
    """``relax`` keeps a recursive SMARTS' first atom (spliced with ``&``: ``[N$(a)]`` must
    not read as sodium) and turns what it cannot keep into ``*``; every molecule a query
    matches, its relaxed form matches too (that is what lets it screen)."""
    from rdkit import Chem

    from molvae.chem.alerts import _alternatives, catalog_alerts, relax

    assert relax("[N$(a1aaaaa1)]") == "[N&a]"
    assert relax("[C&!$(C=O)]") == "[C&*]"
    assert relax("[$([N,O]C),C]") == "[*,C]"
    assert relax("[$([C&$(CO)]N)]") == "[C&C]"
    assert relax("O=C[$(CS(=O)=O);!$(CN)]") == "O=C[C;*]"
    assert relax("CC(=O)[O,N]") == "CC(=O)[O,N]"
    assert _alternatives("[$(CC),$(N(=O)=O)]") == ["CC", "N(=O)=O"]
    assert _alternatives("[$(CC") == ["[$(CC"]
    with pytest.raises(ValueError, match="unbalanced"):
        relax("[C&$(CC]")
    for whole in ("[$(CC);$(N)]", "[$(CC)]C", "[C,$(CC)]"):
        assert _alternatives(whole) == [whole]
    nih = catalog_alerts("nih")
    mols = [chem.to_mol(s) for s in test_smiles[:300] + ["O=C(Oc1c(F)cc(C#N)cc1F)C", "[Se]1C=CC=C1"]]
    for query, loose in zip(nih.queries, nih.relaxed, strict=True):
        if loose is None:
            continue
        for mol in mols:
            assert not mol.HasSubstructMatch(query) or mol.HasSubstructMatch(loose), \
                (Chem.MolToSmarts(query), Chem.MolToSmiles(mol))


def test_prepare_panel_builds_the_tables_workers_then_share():
    """``prepare_panel`` builds the named filters' alert sets and the models the panel
    reads once per process (a fresh interpreter: nothing built before it)."""
    import subprocess

    code = ("from molvae.chem import alerts, prepare_panel\n"
            "built = lambda: (alerts.catalog_alerts.cache_info().currsize,"
            " alerts.qed_alerts.cache_info().currsize, alerts.moses_rules.cache_info().currsize)\n"
            "before = built()\n"
            "prepare_panel(['pains', 'moses'], ['qed'])\n"
            "print(before, built())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "(0, 0, 0) (1, 1, 1)"


def test_bit_counts_are_the_dense_product_of_the_fingerprints():
    """chem.BitCounts (frequent bits dense, the rest sparse) counts every pair's shared bits
    exactly, from any start row of the set, for 0/1 fingerprints of any dtype."""
    rng = np.random.default_rng(0)
    fp = rng.random((300, 512)) < 0.04
    fp[:, :12] |= rng.random((300, 12)) < 0.6  # a few bits in most molecules
    counts = chem.BitCounts.of(fp.astype(np.uint8), dense_bits=32)
    assert set(counts.common) >= set(range(12))  # the frequent bits go to the dense product
    dense = fp.astype(np.float32)
    for q in (fp[:50].astype(np.uint8), dense[:50]):
        assert np.array_equal(counts(q), dense[:50] @ dense.T)
        assert np.array_equal(counts(q, start=120), dense[:50] @ dense[120:].T)
