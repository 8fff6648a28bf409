"""Map-style and streaming ``datasets`` datasets built from one generator, so that both give the same records.

``datasets`` is imported inside the functions: the rest of `hierarchical_vl.data` works without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__: list[str] = []  # internal: the annotation loaders of this package use it

_LOADER_VERSION = "1"


def _import_datasets() -> Any:
    """The ``datasets`` module, or an ImportError that says which part of the package needs it."""
    try:
        import datasets
    except ImportError:
        raise ImportError(
            "the annotation loaders of hierarchical_vl.data need the 'datasets' package: "
            "pip install datasets (the region store, readers and collators work without it)"
        ) from None
    return datasets


def _features(spec: Mapping[str, Any]) -> Any:
    """The ``datasets.Features`` of a compact spec of the rows.

    In the spec a dtype name (``"int64"``) is a ``Value``, ``[spec]`` a ``List`` of it, ``(spec, n)`` a ``List`` of
    length n, a dict a struct of its fields in order; ``datasets`` feature objects (a ``ClassLabel``) stand as
    they are.
    """
    datasets = _import_datasets()

    def feature(node: Any) -> Any:
        if isinstance(node, str):
            return datasets.Value(node)
        if isinstance(node, list):
            (item,) = node
            return datasets.List(feature(item))
        if isinstance(node, tuple):
            item, length = node
            return datasets.List(feature(item), length=length)
        if isinstance(node, Mapping):
            return {name: feature(value) for name, value in node.items()}
        return node

    return datasets.Features(feature(spec))


def _callable_identity(function: Callable) -> str:
    """A named module-level function counts by its qualified name; a lambda or local function also by its code, so
    that two different lambdas never share a cache."""
    name = f"{getattr(function, '__module__', '')}.{getattr(function, '__qualname__', repr(function))}"
    code = getattr(function, "__code__", None)
    if code is None or ("<lambda>" not in name and "<locals>" not in name):
        return name
    digest = hashlib.sha256(code.co_code)
    digest.update(repr(code.co_consts).encode())
    digest.update(repr(code.co_names).encode())
    for cell in getattr(function, "__closure__", None) or ():
        digest.update(repr(cell.cell_contents).encode())
    digest.update(repr(getattr(function, "__defaults__", None)).encode())
    return f"{name}:{digest.hexdigest()[:16]}"


def _file_fingerprint(*parts: Any) -> str:
    """Hash of the parts; files and directories count by their identity (path, size, time and a hash of their
    contents, see `source_identity`), functions by `_callable_identity`."""
    from .feature_store import source_identity

    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, (str, os.PathLike)) and Path(part).exists():
            part = source_identity(part)
        elif callable(part):
            part = _callable_identity(part)
        digest.update(json.dumps(part, default=str, sort_keys=True).encode())
    return digest.hexdigest()[:32]


def _from_generator(
    generator: Callable,
    gen_kwargs: dict[str, Any],
    features: Any,
    *,
    streaming: bool,
    cache_dir: str | os.PathLike | None,
    fingerprint_parts: Sequence[Any],
    split: str,
) -> Any:
    """Builds a map-style ``Dataset`` (cached, fingerprinted by the files' identity and the functions it calls) or, with
    ``streaming``, an ``IterableDataset`` from one generator, so both give the same records."""
    datasets = _import_datasets()
    split_name = datasets.NamedSplit(re.sub(r"[^\w]+", "_", split))
    if streaming:
        return datasets.IterableDataset.from_generator(
            generator, features=features, gen_kwargs=gen_kwargs, split=split_name
        )
    fingerprint = _file_fingerprint(_LOADER_VERSION, generator, *fingerprint_parts)
    return datasets.Dataset.from_generator(
        generator,
        features=features,
        gen_kwargs=gen_kwargs,
        split=split_name,
        cache_dir=None if cache_dir is None else str(cache_dir),
        fingerprint=fingerprint,
    )


def _load_splits(
    generator: Callable,
    features: Any,
    splits: Mapping[str, tuple[dict[str, Any], Sequence[Any]]],
    *,
    split: str | None,
    streaming: bool,
    cache_dir: str | os.PathLike | None,
) -> Any:
    """Builds the dataset of each split with [`_from_generator`], as an annotation loader returns them.

    Args:
        generator: The row generator, called with each split's keyword arguments.
        features: The rows' ``datasets.Features``.
        splits: Split name -> (the generator's keyword arguments, the fingerprint parts of the split's files).
        split: The one split asked for (``splits`` holds just it), or ``None`` for all.
        streaming: Build ``IterableDataset`` s instead of cached map-style ones.
        cache_dir: Cache directory of the map-style datasets.

    Returns:
        The split's ``Dataset``/``IterableDataset`` when ``split`` is given, else a ``DatasetDict`` /
        ``IterableDatasetDict``.
    """
    datasets = _import_datasets()
    loaded = {
        name: _from_generator(
            generator,
            gen_kwargs,
            features,
            streaming=streaming,
            cache_dir=cache_dir,
            split=name,
            fingerprint_parts=fingerprint_parts,
        )
        for name, (gen_kwargs, fingerprint_parts) in splits.items()
    }
    if split is not None:
        return loaded[split]
    return datasets.IterableDatasetDict(loaded) if streaming else datasets.DatasetDict(loaded)
