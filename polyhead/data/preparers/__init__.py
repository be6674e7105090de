"""Dataset preparers: `polyhead prepare NAME OUT` writes images plus label tables.

Each preparer is a function `prepare(out: Path, **options) -> dict` that writes
a ready-to-train dataset under `out` and returns a summary of what it wrote.
"""

from __future__ import annotations

from typing import Callable

from polyhead.data.preparers.deepfashion import prepare_deepfashion_attributes
from polyhead.data.preparers.fashion_mnist import prepare_fashion_mnist
from polyhead.data.preparers.multifashion import prepare_multifashion
from polyhead.errors import DataError

__all__ = ["PREPARERS", "get_preparer"]

PREPARERS: dict[str, Callable[..., dict]] = {
    "fashion-mnist": prepare_fashion_mnist,
    "multifashion": prepare_multifashion,
    "deepfashion-attributes": prepare_deepfashion_attributes,
}


def get_preparer(name: str) -> Callable[..., dict]:
    """Return the preparer registered as `name`; DataError naming the valid names if unknown."""
    try:
        return PREPARERS[name]
    except KeyError:
        valid = ", ".join(sorted(PREPARERS))
        raise DataError(f"unknown dataset '{name}' for prepare; choose one of: {valid}") from None
