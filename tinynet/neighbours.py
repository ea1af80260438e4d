"""Nearest neighbours in a feature space: the image retrieval of AlexNet's Figure 4.

Two photos are "similar to the network" when their feature vectors (FC7's 4,096 activations, say)
are close in Euclidean distance; docs/filters-and-features.md works through it.
"""
import numpy as np

__all__ = ["euclidean_distances", "nearest_neighbours"]


def euclidean_distances(queries, items):
    """All pairwise Euclidean distances, (q, d) x (n, d) -> (q, n), via ||a||^2 + ||b||^2 - 2 a.b."""
    queries = np.asarray(queries, dtype=np.float64)
    items = np.asarray(items, dtype=np.float64)
    squared = ((queries ** 2).sum(axis=1)[:, None] + (items ** 2).sum(axis=1)[None, :]
               - 2.0 * queries @ items.T)
    return np.sqrt(np.maximum(squared, 0.0))


def nearest_neighbours(query, items, k, exclude=None):
    """Indices and distances of the ``k`` rows of ``items`` nearest to ``query`` (nearest first).

    ``exclude``: an index of ``items`` to leave out (the query itself).  Ties keep folder order.
    """
    distances = euclidean_distances(np.asarray(query)[None, :], items)[0]
    if exclude is not None:
        distances[exclude] = np.inf
    order = np.argsort(distances, kind="stable")
    order = order[np.isfinite(distances[order])][:k]
    return order, distances[order]
