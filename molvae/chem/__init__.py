"""The RDKit layer: molecules, properties, filters, scores.

Error contract: single-item functions return ``X | None`` for "not a molecule"; batch
functions never raise on one bad molecule, they mark it (``valid = False``) and go on.
"""

from .bits import BitCounts
from .filters import (
    CONTEXT_FILTERS,
    FILTERS,
    MOSES_ALLOWED_ATOMS,
    check_filters,
    combine_desirabilities,
    composite_score,
    desirability,
    desirability_margin,
    moses_alerts,
    passes_lipinski,
    passes_moses,
    passes_veber,
    score_margin,
    term_desirability,
)
from .mol import (
    bulk_tanimoto,
    canonical_smiles,
    fingerprint,
    fingerprints,
    scaffold,
    standardize_mol,
    tanimoto,
    to_mol,
)
from .properties import (
    PROPERTIES,
    PROPERTY_LABELS,
    check_property,
    formal_charge,
    long_ring_penalty,
    np_likeness,
    penalized_logp,
    properties,
    sa_score,
)
from .score import prepare_panel, score_one, score_smiles

__all__ = [
    "BitCounts",
    "CONTEXT_FILTERS", "FILTERS", "MOSES_ALLOWED_ATOMS", "PROPERTIES", "PROPERTY_LABELS",
    "bulk_tanimoto", "canonical_smiles", "check_filters", "check_property",
    "combine_desirabilities", "composite_score", "desirability", "desirability_margin",
    "term_desirability", "fingerprint", "fingerprints", "formal_charge",
    "long_ring_penalty", "moses_alerts", "np_likeness", "passes_lipinski", "passes_moses",
    "passes_veber", "penalized_logp", "prepare_panel", "properties", "sa_score", "scaffold", "score_margin",
    "score_one", "score_smiles", "standardize_mol", "tanimoto", "to_mol",
]
