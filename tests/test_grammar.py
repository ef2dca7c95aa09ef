"""The decode-time ring-size grammar (molvae.grammar) and its use in Decoder.generate."""

from __future__ import annotations

import math
import random
from collections import Counter

import pandas as pd
import pytest
import selfies as sf
import torch
from rdkit import Chem, RDLogger
from selfies.decoder import _derive_mol_from_symbols, _form_rings_bilocally, _tokenize_selfies
from selfies.mol_graph import MolecularGraph

from molvae.grammar import (
    RingSizeConstraint,
    _Derivation,
    _TokenTable,
    allowed_ring_sizes,
    ring_closure_sizes,
)
from molvae.model import Decoder
from molvae.vocab import BOS_ID, EOS_ID, PAD_ID, Vocab, smiles_to_selfies
from tests.conftest import SHIPPED_TEST, SHIPPED_TRAIN

RDLogger.DisableLog("rdApp.*")

# The vocabulary of the shipped MOSES model (Vocab.build of the MOSES SELFIES).
TOKENS = ["<pad>", "<bos>", "<eos>", "[#Branch1]", "[#Branch2]", "[#C]", "[#N]", "[=Branch1]",
          "[=Branch2]", "[=C]", "[=N]", "[=O]", "[=Ring1]", "[=Ring2]", "[=S]", "[Br]",
          "[Branch1]", "[Branch2]", "[C]", "[Cl]", "[F]", "[NH1]", "[N]", "[O]", "[P]", "[Ring1]",
          "[Ring2]", "[S]"]
# Tokens outside that vocabulary that exercise the rest of the grammar.
EXOTIC = ["[nop]", ".", "[-/Ring1]", "[\\/Ring2]", "[#Ring1]", "[Ring3]", "[Branch3]",
          "[=Branch3]", "[#Branch3]", "[I]", "[CH4]", "[O-1]", "[N+1]", "[epsilon]", "[H]", "[=P]",
          "[B]", "[Xyz]"]
SMALL = range(3, 8)  # the ring sizes of MOSES (allowed_ring_sizes of its training SELFIES)
# Token weights of the random strings: mostly chain atoms and [Ring1] (uniform weights end
# most strings after a few atoms, a halogen or =O filling the valence of the chain).
WEIGHTS = {"<pad>": 0.0, "<bos>": 0.0, "<eos>": 0.4, "[C]": 6, "[=C]": 2, "[N]": 2, "[O]": 1,
           "[Ring1]": 2.5, "[Ring2]": 0.3, "[=Ring1]": 0.5, "[Branch1]": 1.5, "[=Branch1]": 0.5}


def _sssr_sizes(smiles: str) -> list[int]:
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:  # selfies output RDKit will not sanitize: rings of the bare graph
        mol = Chem.MolFromSmiles(smiles, sanitize=False)
        mol.UpdatePropertyCache(strict=False)
        Chem.FastFindRings(mol)
        return sorted(len(r) for r in Chem.GetSymmSSSR(mol))
    return sorted(len(r) for r in mol.GetRingInfo().AtomRings())


def _selfies_graph(s: str):
    """selfies' own derivation (the decoder's internals): atom count, ring closures as
    (left, right, order), bonds {(i, j): order} after _form_rings_bilocally."""
    mol, rings = MolecularGraph(), []
    for frag in s.split("."):
        _derive_mol_from_symbols(enumerate(_tokenize_selfies(frag, False)), mol, s, math.inf, 0,
                                 None, rings, None, 0)
    _form_rings_bilocally(mol, rings)
    bonds = {(min(a, b), max(a, b)): bond.order for (a, b), bond in mol._bond_dict.items()}
    return len(mol), [(lt.index, rt.index, info[0]) for lt, rt, info in rings], bonds


def _train_selfies(n: int) -> list[str]:
    smiles = pd.read_csv(SHIPPED_TRAIN, nrows=n)["SMILES"]
    return [s for s in map(smiles_to_selfies, smiles) if s]


# --------------------------------------------------------------------------- derivation


@pytest.mark.parametrize(("smiles", "sizes"), [
    ("c1ccccc1", [6]),
    ("C1CC1", [3]),
    ("c1ccc2ccccc2c1", [6, 6]),
    ("C1CCCCCCCCCCC1", [12]),
    ("CCO", []),
    ("C1CC2CCC1CC2", [6, 6]),  # bicyclo[2.2.2]octane: two closures, two 6-rings in SSSR
    ("C12CC1C2", [3, 3]),  # bicyclo[1.1.0]butane
    ("CC(C)Oc1ccccc1C(=O)Nc1ccnc2[nH]ncc12", [6, 6, 5]),
])
def test_ring_closure_sizes_of_known_molecules(smiles, sizes):
    assert ring_closure_sizes(sf.encoder(smiles)) == sizes


def test_a_fused_perimeter_is_closed_first_then_split():
    """The encoder closes the 5+6 perimeter (9 atoms) before the closure that splits it."""
    s = sf.encoder("CC(C)Oc1ccccc1C(=O)Nc1ccnc2[nH]ncc12")
    assert s.endswith("[C][Ring1][=Branch2][=Ring1][Branch1]")
    assert ring_closure_sizes(s, at_decode_time=True) == [6, 9, 5]
    assert ring_closure_sizes(s) == [6, 6, 5]


def test_closures_that_make_no_ring():
    assert ring_closure_sizes("[C][C][Ring1][C]") == []  # onto its neighbour: a double bond
    assert sf.decoder("[C][C][Ring1][C]") == "C=C"
    assert ring_closure_sizes("[C][Ring1][C]") == []  # atom 0 onto itself
    assert ring_closure_sizes("[C][C][C][F][Ring1][Ring1]") == []  # F is full: state 0, ignored
    # onto an [O] with no free valence left: selfies drops the ring bond
    assert sf.decoder("[C][O][C][C][Ring1][Ring1]") == "COCC"
    assert ring_closure_sizes("[C][O][C][C][Ring1][Ring1]") == []
    assert ring_closure_sizes("[C][C][C][C][Ring1][Ring1]") == [3]
    with pytest.raises(sf.DecoderError):
        ring_closure_sizes("[C][Xyz]")


def test_the_tracker_derives_exactly_what_selfies_derives():
    """Random token strings (branches, rings, dots, [nop], stereo rings, epsilon, full atoms):
    the same atoms, ring closures and final bonds (with orders) as selfies' decoder."""
    tokens = TOKENS[3:] + EXOTIC[:-1]
    table = _TokenTable(["<eos>", *tokens])
    rng = random.Random(0)
    weights = [4 if t in ("[Ring1]", "[Ring2]", "[Branch1]", "[C]", "[=C]") else 1 for t in tokens]
    compared = 0
    for _ in range(3000):
        ids = rng.choices(range(1, len(tokens) + 1), weights, k=rng.randint(1, 45))
        s = "".join(tokens[i - 1] for i in ids)
        d = _Derivation(table)
        for i in ids:
            d.feed(i)
        d.feed(0)
        try:
            n, rings, bonds = _selfies_graph(s)
        except sf.DecoderError:
            assert d.status == 2, s
            continue
        assert (len(d.caps), d.rings, d.final_bonds()) == (n, rings, bonds), s
        compared += 1
    assert compared > 2500


def test_closure_sizes_agree_with_rdkit():
    """On MOSES test molecules, exactly:
    * one ring-forming closure per independent ring (count = bonds - atoms + fragments);
    * the smallest closure size is the smallest ring (the girth: a shortest cycle contains
      a closure bond, whose smallest ring can be no longer);
    * max closure size <= max SSSR ring <= max decode-time size (each closure bond lies in
      some SSSR ring; the decode-time rings form a cycle basis, never beaten by the minimum
      one);
    * with isolated rings (no atom in two rings) the closure sizes are the SSSR sizes."""
    smiles = pd.read_csv(SHIPPED_TEST, nrows=400)["SMILES"]
    isolated = 0
    for smi in smiles:
        s = smiles_to_selfies(smi)
        mol = Chem.MolFromSmiles(sf.decoder(s))
        sssr = sorted(len(r) for r in mol.GetRingInfo().AtomRings())
        sizes = ring_closure_sizes(s)
        at_decode = [x for x in ring_closure_sizes(s, at_decode_time=True) if x]
        cyclomatic = mol.GetNumBonds() - mol.GetNumAtoms() + len(Chem.GetMolFrags(mol))
        assert len(sizes) == len(at_decode) == cyclomatic == len(Chem.GetSSSR(mol)), smi
        if not sizes:
            continue
        assert min(sizes) == min(sssr), smi
        assert max(sizes) <= max(sssr) <= max(at_decode), smi
        if max(Counter(a for r in mol.GetRingInfo().AtomRings() for a in r).values()) == 1:
            assert sorted(sizes) == sssr == sorted(at_decode), smi
            isolated += 1
    assert isolated > 100


def test_allowed_ring_sizes_of_the_training_data():
    allowed = allowed_ring_sizes(_train_selfies(5000))
    assert {5, 6} <= set(allowed)
    assert 12 not in allowed
    assert allowed == sorted(allowed)
    assert allowed_ring_sizes(["[C][C][C][Ring1][Ring1]"] * 3 + ["[C]"]) == [3]
    # a size seen once in 10 closures is dropped at min_share 0.2, kept at 0.1
    rings = ["[C][C][C][Ring1][Ring1]"] * 9 + ["[C][C][C][C][Ring1][Ring2]"]
    assert allowed_ring_sizes(rings, min_share=0.2) == [3]
    assert allowed_ring_sizes(rings, min_share=0.1) == [3, 4]


# --------------------------------------------------------------------------- the constraint


def _sample(constraint: RingSizeConstraint | None, n: int, seed: int, record: bool = False):
    """Draw n token strings over TOKENS as a sampler would: at each step from WEIGHTS
    renormalized over the tokens not banned. -> (SELFIES strings, per-step records)."""
    v = len(TOKENS)
    gen = torch.Generator().manual_seed(seed)
    weights = torch.tensor([WEIGHTS.get(t, 0.2) for t in TOKENS])  # ~40 tokens a string
    state = constraint.start(n) if constraint is not None else None
    out: list[list[int]] = [[] for _ in range(n)]
    alive = torch.arange(n)
    records = []
    for _ in range(1000):
        w = weights.expand(len(alive), v).clone()
        banned = state.banned(alive) if state is not None else None
        if banned is not None:
            assert banned.shape == (len(alive), v) and banned.dtype == torch.bool
            # never every token of a row
            assert not (banned | (weights == 0)).all(1).any()
            w[banned] = 0
        tok = torch.multinomial(w, 1, generator=gen)[:, 0]
        if record:  # what each row was doing when the mask was made
            records.append((banned, [(state.derivation(r).pend, state.derivation(r).split_of)
                                     for r in alive.tolist()]))
        if state is not None:
            state.advance(alive, tok)
        for row, t in zip(alive.tolist(), tok.tolist(), strict=True):
            out[row].append(t)
        alive = alive[tok != EOS_ID]
        if not len(alive):
            break
    assert not len(alive)
    return ["".join(TOKENS[i] for i in ids if i != EOS_ID) for ids in out], records


def _largest_ring(selfies_strings: list[str]) -> list[int]:
    return [max(_sssr_sizes(sf.decoder(s)), default=0) for s in selfies_strings]


def test_random_strings_never_get_a_ring_larger_than_allowed():
    """Unconstrained, a uniform sampler over the vocabulary closes 8+ rings often; under the
    constraint no decoded molecule has an SSSR ring above the allowed maximum."""
    free = _largest_ring(_sample(None, 600, seed=1)[0])
    assert sum(m >= 8 for m in free) > 25
    for allowed, seed in ((SMALL, 2), (range(3, 7), 3), (range(3, 6), 4)):
        strings, _ = _sample(RingSizeConstraint(TOKENS, allowed), 600, seed=seed)
        largest = _largest_ring(strings)
        assert max(largest) <= max(allowed)
        assert sum(m >= 3 for m in largest) > 150  # rings are still made


def test_random_strings_ring_sizes_stay_in_the_allowed_set():
    """Closure by closure: every ring bond the molecule gets has its smallest ring in the
    allowed set, and every closure first seen with a disallowed size was split."""
    strings, _ = _sample(RingSizeConstraint(TOKENS, SMALL), 600, seed=5)
    splits = 0
    for s in strings:
        assert set(ring_closure_sizes(s)) <= set(SMALL), s
        splits += any(x > 7 for x in ring_closure_sizes(s, at_decode_time=True))
    assert splits > 10


def test_bans_only_where_a_ring_closure_is_at_stake():
    """A mask row is only ever set for a molecule reading a ring index, owing a split, or
    about to be offered ring tokens (then only ring tokens are banned); strings without ring
    and branch tokens never see a mask."""
    con = RingSizeConstraint(TOKENS, SMALL)
    ring_ids = {i for i, t in enumerate(TOKENS) if "Ring" in t}
    _, records = _sample(con, 300, seed=6, record=True)
    kinds = Counter()
    for banned, rows in records:
        if banned is None:
            continue
        for pos, (pend, split_of) in enumerate(rows):
            ids = set(banned[pos].nonzero()[:, 0].tolist())
            if not ids:
                continue
            if pend == 2:
                kinds["index"] += 1
            elif split_of >= 0:
                kinds["split"] += 1
                assert ids == set(range(len(TOKENS))) - ring_ids - {PAD_ID, BOS_ID}
            else:
                kinds["ring token"] += 1
                assert ids <= ring_ids
    assert kinds["index"] > 100 and kinds["split"] > 5
    chain = [TOKENS.index(t) for t in ("[C]", "[=C]", "[N]", "[O]", "[C]", "[C]", "[S]")]
    state = con.start(4)
    alive = torch.arange(4)
    for t in chain * 5:
        assert state.banned(alive) is None
        state.advance(alive, torch.full((4,), t))


def _fed(constraint: RingSizeConstraint, selfies_string: str):
    state = constraint.start(1)
    for t in sf.split_selfies(selfies_string):
        state.advance(torch.arange(1), torch.tensor([TOKENS.index(t)]))
    return state


def _banned(state) -> set[str]:
    mask = state.banned(torch.arange(1))
    return set() if mask is None else {TOKENS[i] for i in mask[0].nonzero()[:, 0].tolist()}


RING_7 = "[C][Branch1][=Branch1][C][C][C][C][C][C][Ring1]"


def test_index_tokens_that_close_a_disallowed_ring_are_banned():
    """RING_7: a root, a branch of 5 atoms on it, then an atom on the root; the atom before
    that one is the branch's end, 6 bonds away, so [Ring1] with Q = 0 (index [C], or the
    string ending) closes a 7-ring, Q = 1 ([Ring1] as index) a 6-ring, Q = 2 a 5-ring,
    Q = 3, 4 a 4- and 3-ring, Q >= 5 the root, already bonded (a double bond)."""
    assert ring_closure_sizes(RING_7) == [7]
    for index, size in (("[Ring1]", [6]), ("[Ring2]", [5]), ("[Branch1]", [4]),
                        ("[=Branch1]", [3]), ("[#Branch1]", [])):
        assert ring_closure_sizes(RING_7 + index) == size
    # allowed {5, 6}: no split of a 7-ring into 5/6-rings, so Q = 0, 3, 4 are banned
    banned = _banned(_fed(RingSizeConstraint(TOKENS, [5, 6]), RING_7))
    assert {"<eos>", "[C]", "[F]", "[Cl]", "[=O]", "[Branch1]", "[=Branch1]"} <= banned
    assert not banned & {"[Ring1]", "[Ring2]", "[#Branch1]", "[O]", "[N]", "[#C]"}
    # every index token is allowed with 7 allowed; nothing is banned
    assert _banned(_fed(RingSizeConstraint(TOKENS, SMALL), RING_7)) == set()


def test_a_disallowed_ring_that_can_be_split_obliges_a_split():
    """allowed 3..6: the 7-ring of RING_7 + [C] can be split by one more closure at the same
    atom, so [C] is allowed (the string ending there is not); then only ring tokens are, and
    only indices that leave rings of allowed sizes."""
    con = RingSizeConstraint(TOKENS, range(3, 7))
    assert _banned(_fed(con, RING_7)) == {"<eos>"}
    state = _fed(con, RING_7 + "[C]")
    ring_tokens = {t for t in TOKENS if "Ring" in t}
    assert _banned(state) == set(TOKENS) - ring_tokens - {"<pad>", "<bos>"}
    # the second closure (Q + 1 atoms back from atom 6; the perimeter is 6-0-1-2-3-4-5-6):
    # Q = 1..4 (atoms 4..1) split it into 3+6, 4+5, 5+4, 6+3 rings; Q = 0 (atom 5, the
    # perimeter's own partner) and Q >= 5 (the root, bonded) do not split it
    split = {"[Ring1]": [3, 6], "[Ring2]": [4, 5], "[Branch1]": [4, 5], "[=Branch1]": [3, 6]}
    banned = _banned(_fed(con, RING_7 + "[C][Ring1]"))
    assert not banned & set(split)
    assert {"[C]", "<eos>", "[F]", "[#Branch1]", "[Branch2]", "[O]", "[N]"} <= banned
    for index, sssr in split.items():
        assert _sssr_sizes(sf.decoder(RING_7 + "[C][Ring1]" + index)) == sssr
        assert ring_closure_sizes(RING_7 + "[C][Ring1]" + index, at_decode_time=True)[0] == 7
    assert _sssr_sizes(sf.decoder(RING_7 + "[C][Ring1][C]")) == [7]


def test_training_molecules_are_almost_never_blocked():
    """Fed the training token strings, the constraint bans none of their tokens except for
    the rare ones whose perimeter closure is split later than right after it (bridged and
    peri-fused systems), and it bans nothing in a molecule whose closures all have allowed
    sizes from the start."""
    selfies_strings = _train_selfies(2000)
    vocab = Vocab.build(selfies_strings)
    con = RingSizeConstraint(vocab.tokens, allowed_ring_sizes(selfies_strings))
    assert con.allowed == frozenset(SMALL)
    ids = [vocab.to_ids(s)[1:] for s in selfies_strings]
    state = con.start(len(ids))
    blocked = set()
    perimeter_splits = 0
    for t in range(max(map(len, ids))):
        rows = [i for i, x in enumerate(ids) if t < len(x)]
        alive, tok = torch.tensor(rows), torch.tensor([ids[i][t] for i in rows])
        banned = state.banned(alive)
        if banned is not None:
            blocked.update(rows[p] for p in banned[torch.arange(len(rows)), tok].nonzero()[:, 0])
            perimeter_splits += int(banned[:, EOS_ID].sum())
        state.advance(alive, tok)
    assert len(blocked) <= 0.005 * len(ids)
    for i in blocked:
        assert max(ring_closure_sizes(selfies_strings[i], at_decode_time=True)) > 7
    assert perimeter_splits > 50  # perimeters were accepted and their split enforced


# --------------------------------------------------------------------------- Decoder.generate


def _decoder(seed: int = 0) -> Decoder:
    """A small random decoder whose tokens roughly follow WEIGHTS (many ring closures)."""
    torch.manual_seed(seed)
    dec = Decoder(len(TOKENS), 8, 6, 32, 1).eval()
    with torch.no_grad():
        dec.out.bias += torch.tensor([math.log(WEIGHTS.get(t, 0.2) or 1) for t in TOKENS])
    return dec


@torch.no_grad()
def _old_generate(dec: Decoder, z, max_length, temperature, greedy, generator, banned_first):
    """Decoder.generate as it was before constraint/top_p (the reference for identity)."""
    first_ban = torch.tensor([EOS_ID, *banned_first], dtype=torch.long)
    b = z.shape[0]
    out = torch.full((b, max_length), PAD_ID, dtype=torch.long)
    h = dec.initial_hidden(z)
    tok = torch.full((b,), BOS_ID, dtype=torch.long)
    alive = torch.arange(b)
    zg, step = dec._step_fn(z, dec.weights(False))
    for t in range(max_length):
        h = step(tok, zg, h)
        logits = dec.out(h[-1])
        logits[:, PAD_ID] = -math.inf
        logits[:, BOS_ID] = -math.inf
        if t == 0:
            logits[:, first_ban] = -math.inf
        if greedy:
            tok = logits.argmax(-1)
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            tok = torch.multinomial(probs, 1, generator=generator)[:, 0]
        out[alive, t] = tok
        running = tok != EOS_ID
        if not bool(running.all()):
            alive, tok, zg, h = alive[running], tok[running], zg[running], h[:, running]
            if alive.numel() == 0:
                break
    return out


def test_generate_without_constraint_or_top_p_is_unchanged():
    dec = _decoder()
    z = torch.randn(64, 6, generator=torch.Generator().manual_seed(1))
    structural = [i for i, t in enumerate(TOKENS) if "Ring" in t or "Branch" in t]
    for temperature, greedy in ((1.0, False), (0.7, False), (1.0, True)):
        ref = _old_generate(dec, z, 40, temperature, greedy, torch.Generator().manual_seed(2),
                            structural)
        for top_p in (None, 1.0):
            got = dec.generate(z, 40, 0.0 if greedy else temperature, torch.Generator().manual_seed(2),
                               structural, top_p=top_p)
            assert torch.equal(got, ref)


def test_top_p():
    dec = _decoder()
    z = torch.randn(64, 6, generator=torch.Generator().manual_seed(1))
    greedy = dec.generate(z, 40, temperature=0.0)
    for top_p in (0.0, 1e-6):
        got = dec.generate(z, 40, generator=torch.Generator().manual_seed(3), top_p=top_p)
        assert torch.equal(got, greedy)  # only the top token is ever kept
    a = dec.generate(z, 40, generator=torch.Generator().manual_seed(3), top_p=0.9)
    b = dec.generate(z, 40, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(a, b) and not torch.equal(a, greedy)
    assert torch.equal(dec.generate(z, 40, temperature=0.0, top_p=0.5), greedy)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError):
            dec.generate(z, 5, top_p=bad)


class _Recording:
    """Wraps a constraint; records every mask and the tokens emitted after it."""

    def __init__(self, constraint: RingSizeConstraint):
        self.constraint = constraint
        self.steps: list[tuple[torch.Tensor | None, torch.Tensor]] = []

    def start(self, b: int):
        outer = self
        state = self.constraint.start(b)

        class State:
            def banned(self, alive):
                outer._mask = state.banned(alive)
                return outer._mask

            def advance(self, alive, tokens):
                outer.steps.append((outer._mask, tokens.clone()))
                state.advance(alive, tokens)

        return State()


@pytest.mark.parametrize("kwargs", [{}, {"top_p": 0.9}, {"temperature": 0.0}, {"temperature": 1.5}])
def test_generate_never_emits_a_banned_token(kwargs):
    dec = _decoder(seed=4)
    z = torch.randn(300, 6, generator=torch.Generator().manual_seed(5))
    rec = _Recording(RingSizeConstraint(TOKENS, SMALL))
    ids = dec.generate(z, 80, generator=torch.Generator().manual_seed(6), constraint=rec, **kwargs)
    masked = 0
    for mask, tokens in rec.steps:
        if mask is not None:
            assert not mask[torch.arange(len(tokens)), tokens].any()
            masked += int(mask.any(1).sum())
    if kwargs.get("temperature") == 0:  # this random decoder's greedy strings loop without <eos>
        return
    assert masked > 20
    vocab = Vocab(TOKENS)
    ended = [row for row in ids.tolist() if EOS_ID in row]  # a cut string may end mid-index
    assert len(ended) > 100
    largest = _largest_ring([vocab.to_selfies(row) for row in ended])
    assert max(largest) <= 7
    free = dec.generate(z, 80, generator=torch.Generator().manual_seed(6), **kwargs)
    ended = [row for row in free.tolist() if EOS_ID in row]
    assert max(_largest_ring([vocab.to_selfies(row) for row in ended])) >= 8
