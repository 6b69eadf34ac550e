"""Look-alike photos from training: each model's embedding of every training photo, cached per
checkpoint, and exact cosine search over them (issue 20, item 2).

- :mod:`~mushcam.lookalike.features`: the pooled features a model's head receives (one forward).
- :mod:`~mushcam.lookalike.store`: the on-disk ``.npy`` + JSON index, keyed like the maps.
- :mod:`~mushcam.lookalike.embeddings`: build or reuse the embeddings of a set of photos.
- :mod:`~mushcam.lookalike.search`: :func:`nearest` (exact cosine, numpy).
- :mod:`~mushcam.lookalike.neighbours`: a photo's look-alikes of its predicted and true class.
"""

from mushcam.lookalike.embeddings import BuiltIndex, build_index, compute_features, model_digest, training_photos
from mushcam.lookalike.features import EmbeddingError, head_module, pooled_features
from mushcam.lookalike.neighbours import LookAlikes, look_alikes
from mushcam.lookalike.search import Neighbour, SearchError, nearest, similarities
from mushcam.lookalike.store import EmbeddingIndex, default_embedding_dir, embedding_key, load_index, save_index

__all__ = [
    "BuiltIndex",
    "EmbeddingError",
    "EmbeddingIndex",
    "LookAlikes",
    "Neighbour",
    "SearchError",
    "build_index",
    "compute_features",
    "default_embedding_dir",
    "embedding_key",
    "head_module",
    "load_index",
    "look_alikes",
    "model_digest",
    "nearest",
    "pooled_features",
    "save_index",
    "similarities",
    "training_photos",
]
