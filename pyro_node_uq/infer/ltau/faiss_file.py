"""Reading a faiss index file safely: its header is checked against what the save expects before faiss sees the
bytes (faiss trusts the sizes in the file: a corrupt size asks for terabytes and ends in ``std::bad_alloc``)."""
import os
import struct

from ...utils.persist import SaveError

__all__ = ["faiss_module", "read_faiss_index"]

#: the index types LTAU writes: the exact L2 flat index, HNSW over a flat store
_FLAT, _HNSW = {b"IxF2"}, {b"IHNf"}
_METRIC_L2 = 1
_HEADER = struct.Struct("<4siqqq?i")  # fourcc, d, ntotal, two reserved sizes, is_trained, metric type


def faiss_module():
    """The ``faiss`` module, or an ImportError that says how to install it."""
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - faiss-cpu is a declared dependency of the ltau extra
        raise ImportError("LTAU needs faiss: pip install faiss-cpu (or pyro-node-uq[ltau])") from e
    return faiss


def read_faiss_index(path, dim, size):
    """``faiss.read_index(path)`` after checking the file's type, dimension ``dim`` and number of points ``size``.

    :raises ~pyro_node_uq.utils.persist.SaveError: the file is not a flat or HNSW index of ``size`` points of
        dimension ``dim`` (truncated, corrupt, or from another save), or faiss cannot read it.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(_HEADER.size + 8)
    if len(head) < _HEADER.size:
        raise SaveError(f"{path}: {len(head)} bytes, too short for a faiss index (truncated?)")
    fourcc, d, ntotal, _, _, trained, metric = _HEADER.unpack_from(head)
    if fourcc not in _FLAT | _HNSW:
        raise SaveError(f"{path}: not a flat or HNSW faiss index (type {fourcc!r})")
    if metric != _METRIC_L2 or not trained:
        raise SaveError(f"{path}: an index with metric type {metric} (trained: {trained}); LTAU writes trained "
                        "L2 indexes, so the file is corrupt or not an LTAU index")
    if d != dim or ntotal != size:
        raise SaveError(f"{path}: an index of {ntotal} points in {d} dimensions, but the LTAU state has {size} "
                        f"points in {dim}; the files come from different saves")
    if fourcc in _FLAT:
        expected = _HEADER.size + 8 + 4 * d * ntotal
        count = struct.unpack_from("<Q", head, _HEADER.size)[0] if len(head) >= _HEADER.size + 8 else None
        if count != d * ntotal or os.path.getsize(path) != expected:
            raise SaveError(f"{path}: {os.path.getsize(path)} bytes, expected {expected} for {ntotal} points in "
                            f"{d} dimensions; the index is truncated or corrupt")
    try:
        return faiss_module().read_index(path)
    except (RuntimeError, MemoryError) as e:
        raise SaveError(f"{path}: not a readable faiss index: {type(e).__name__}: "
                        f"{(str(e).splitlines() or [''])[0]}"[:400]) from e
