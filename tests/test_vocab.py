import pandas as pd
import pytest
import selfies as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from molvae import chem, parallel
from molvae.errors import InvalidMoleculeError
from molvae.vocab import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    Vocab,
    VocabError,
    selfies_to_smiles,
    smiles_to_selfies,
    tokenize_smiles,
)
from tests.conftest import SHIPPED_TEST


def _round_trip(smiles):
    return [chem.canonical_smiles(selfies_to_smiles(smiles_to_selfies(s))) for s in smiles]


@pytest.mark.slow
def test_round_trip_on_the_shipped_test_sample():
    """A third of the shipped test sample (3,334 molecules; all 10,000 took ~20 s of CPU
    in the suite) goes SMILES -> SELFIES -> SMILES unchanged, in two processes."""
    smiles = [chem.canonical_smiles(s) for s in pd.read_csv(SHIPPED_TEST)["SMILES"][::3]]
    with parallel.pool(2) as p:
        back = sum(p.map(_round_trip, [smiles[i::2] for i in range(2)]), [])
    expected = smiles[0::2] + smiles[1::2]
    mismatches = [(a, b) for a, b in zip(expected, back, strict=True) if a != b]
    assert len(smiles) == 3_334 and not mismatches, mismatches[:5]


def test_canonical_input_skips_parsing_with_the_same_tokens():
    """tokenize_smiles(canonical=True) (what a refinement pass uses on decoded molecules)
    gives the tokens of the parsing path for canonical SMILES, and an error for ''."""
    smiles = [chem.canonical_smiles(s) for s in pd.read_csv(SHIPPED_TEST)["SMILES"][:500]]
    v = Vocab.build([smiles_to_selfies(s) for s in smiles])
    parsed = tokenize_smiles(v, smiles + [""], strict=False)
    trusted = tokenize_smiles(v, smiles + [""], strict=False, canonical=True)
    assert (parsed.tokens == trusted.tokens).all() and parsed.canonical == trusted.canonical
    assert trusted.ok.tolist() == [True] * 500 + [False]
    assert "not a valid molecule" in trusted.errors[-1]


def test_vocab_encode_decode_and_serialization():
    v = Vocab.build(["[C][O]", "[C][=C][Br]"])
    assert v.to_list()[:3] == ["<pad>", "<bos>", "<eos>"]
    ids = v.to_ids("[C][=C][Br]")
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID and len(ids) == 5
    assert v.to_selfies(ids + [PAD_ID, PAD_ID]) == "[C][=C][Br]"
    assert v.to_selfies([BOS_ID, ids[1], EOS_ID, ids[2]]) == "[C]"  # stops at <eos>
    assert Vocab.from_list(v.to_list()) == v


def test_unknown_tokens_are_named():
    v = Vocab.build(["[C][O]"])
    with pytest.raises(VocabError) as exc:
        v.to_ids("[C][Cl]", "CCl")
    assert "[Cl]" in str(exc.value) and "CCl" in str(exc.value) and exc.value.tokens == ["[Cl]"]
    batch = tokenize_smiles(v, ["CO", "CCl", "not a molecule"], strict=False)
    assert batch.errors[0] is None and batch.ok.tolist() == [True, False, False]
    assert "[Cl]" in batch.errors[1] and "not a valid molecule" in batch.errors[2]
    assert batch.tokens[1].tolist() == [PAD_ID] * batch.tokens.shape[1]
    with pytest.raises(InvalidMoleculeError, match=r"outside the vocabulary: \[Cl\]"):
        tokenize_smiles(v, ["CO", "CCl"])
    assert v.unknown("[C][Cl][Si]") == ["[Cl]", "[Si]"]


def test_bad_vocab_lists():
    with pytest.raises(ValueError, match="must start"):
        Vocab(["[C]", "<pad>", "<bos>", "<eos>"])
    with pytest.raises(ValueError, match="duplicate"):
        Vocab(["<pad>", "<bos>", "<eos>", "[C]", "[C]"])


def test_encoder_and_decoder_failures_return_none():
    assert smiles_to_selfies("C1CC(") is None  # unclosed ring and branch
    assert smiles_to_selfies("C(C)(C)(C)(C)C") is None  # pentavalent carbon
    assert selfies_to_smiles("") is None
    assert selfies_to_smiles("[Branch1]") is None  # decodes to nothing


ALPHABET = sorted(sf.get_semantic_robust_alphabet())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=40))
def test_random_selfies_always_decode_and_round_trip(tokens):
    """Any SELFIES token string decodes to a molecule (or nothing), and that molecule
    survives SMILES -> SELFIES -> SMILES unchanged by canonical SMILES."""
    smi = selfies_to_smiles("".join(tokens))
    if smi is None:
        return
    can = chem.canonical_smiles(smi)
    assert can is not None
    assert chem.canonical_smiles(selfies_to_smiles(smiles_to_selfies(can))) == can


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=30))
def test_vocab_round_trips_random_token_strings(tokens):
    s = "".join(tokens)
    v = Vocab.build([s])
    assert v.to_selfies(v.to_ids(s)) == s
