"""Shared embeddings and similarity search: `polyhead embed` writes the pooled shared features of
images to Parquet (`embeddings`), `polyhead neighbors` and `Predictor.similar` search them through a
faiss index kept next to that file (`index`)."""

from polyhead.search.embeddings import EmbeddingInfo, model_fingerprint, pooled_features, write_embeddings
from polyhead.search.index import Neighbor, SimilarityIndex

__all__ = ["EmbeddingInfo", "model_fingerprint", "pooled_features", "write_embeddings", "Neighbor",
           "SimilarityIndex"]
