"""Binary embeddings for similarity search: sign codes packed in uint32 words, searched by
Hamming distance with the XNOR-popcount kernel.

>>> index = build_index(embeddings, projection="itq")      # float [N, d] -> packed codes
>>> dist, idx = search(index, queries, k=10)              # Hamming top-k
>>> index.save("db.npz"); index = load_index("db.npz")    # plain arrays, no pickle

:mod:`extremeq.retrieval.exact` holds the float yardsticks (exact inner-product search,
re-ranking of a shortlist, recall@k).
"""

from extremeq.retrieval.exact import dot_product_search, recall_at_k, rerank
from extremeq.retrieval.index import (
    BinaryIndex,
    build_index,
    hamming_distances,
    load_index,
    search,
)
from extremeq.retrieval.rotation import (
    PROJECTIONS,
    itq_loss,
    itq_rotation,
    random_rotation,
)

__all__ = [
    "PROJECTIONS",
    "BinaryIndex",
    "build_index",
    "dot_product_search",
    "hamming_distances",
    "itq_loss",
    "itq_rotation",
    "load_index",
    "random_rotation",
    "recall_at_k",
    "rerank",
    "search",
]
