"""Checkpoints as ``.npz`` files without pickle, written atomically.

A checkpoint is a nested structure of dicts and lists whose leaves are arrays,
numbers, strings, booleans or None: a model's ``state_dict()``, an optimizer's,
a scheduler's, the epoch, the random generators' states.  Arrays are stored as
``.npz`` entries named by their path (``model/features.0.weight``; a "/" inside a key is
stored as ``%2F``, so paths never collide); everything
else goes into one JSON document stored as a byte array.  Loading uses
``allow_pickle=False``, so a checkpoint can never execute code.

Writing goes to a temporary file in the same folder, flushed to disk, then
renamed over the target: a crash mid-write leaves the previous checkpoint
intact, never a half-written one.
"""
import json
import os
import tempfile
import zipfile

import numpy as np

from . import backend

_FORMAT = "tinynet-checkpoint-1"
_TREE_KEY = "__tree__"


class CheckpointError(ValueError):
    """A file that is missing, truncated, corrupt or not a tinynet checkpoint."""


def _escape(key: str) -> str:
    """A dict key as one component of an entry name: "/" separates components, so a key
    containing it is escaped (``%2F``, and ``%`` itself as ``%25``); otherwise
    ``{'a/b': x, 'a': {'b': y}}`` would store both arrays under ``a/b``."""
    return key.replace("%", "%25").replace("/", "%2F")


def _flatten(value, path, arrays):
    if isinstance(value, dict):
        keys = [str(k) for k in value]
        if len(set(keys)) != len(keys):
            clash = sorted(k for k in set(keys) if keys.count(k) > 1)[0]
            raise TypeError(f"checkpoint: two keys at {path or '/'} are both stored as {clash!r} (keys are "
                            f"stored as strings, e.g. 1 and '1'); rename one")
        return {"dict": {str(k): _flatten(v, f"{path}/{_escape(str(k))}", arrays) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"list": [_flatten(v, f"{path}/{i}", arrays) for i, v in enumerate(value)],
                "tuple": isinstance(value, tuple)}
    if hasattr(value, "data") and hasattr(value, "requires_grad"):  # a Tensor
        value = value.data
    if backend.is_gpu_array(value) or isinstance(value, np.ndarray):
        key = path.lstrip("/") or "value"
        arrays[key] = backend.to_numpy(value)
        return {"array": key}
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    raise TypeError(f"checkpoint: cannot store a {type(value).__name__} at {path or '/'}; "
                    f"only dicts, lists, arrays, numbers, strings, booleans and None")


def _unflatten(node, arrays):
    if "dict" in node:
        return {k: _unflatten(v, arrays) for k, v in node["dict"].items()}
    if "list" in node:
        items = [_unflatten(v, arrays) for v in node["list"]]
        return tuple(items) if node.get("tuple") else items
    if "array" in node:
        return arrays[node["array"]]
    return node["value"]


def save(obj, path):
    """Write ``obj`` (nested dicts/lists of arrays and plain values) to ``path`` atomically."""
    arrays = {}
    tree = _flatten(obj, "", arrays)
    document = json.dumps({"format": _FORMAT, "tree": tree})
    arrays[_TREE_KEY] = np.frombuffer(document.encode("utf-8"), dtype=np.uint8)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
            stream.flush()
            os.fsync(stream.fileno())
        # mkstemp creates the file private (0600); give it the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def load(path):
    """Read a checkpoint written by :func:`save`; arrays come back as NumPy arrays."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as error:
        raise CheckpointError(
            f"could not read checkpoint {path!r}: the file is truncated, corrupt or not an .npz "
            f"written by tinynet ({type(error).__name__}: {error})") from None
    if _TREE_KEY not in arrays:
        raise CheckpointError(f"{path!r} is an .npz file but not a tinynet checkpoint (no {_TREE_KEY} entry)")
    try:
        document = json.loads(arrays.pop(_TREE_KEY).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"checkpoint {path!r} has a corrupt index: {error}") from None
    if document.get("format") != _FORMAT:
        raise CheckpointError(f"checkpoint {path!r} has format {document.get('format')!r}, expected {_FORMAT!r}")
    return _unflatten(document["tree"], arrays)
