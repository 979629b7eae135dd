"""Reading a saved faiss index: a good flat or HNSW index of the expected size reads back; a wrong type, metric,
size, dimension or a truncated file is refused with a SaveError naming the file, before faiss reads its sizes."""
import numpy as np
import pytest

from pyro_node_uq.infer.ltau.faiss_file import faiss_module, read_faiss_index
from pyro_node_uq.utils.persist import SaveError

faiss = faiss_module()
POINTS = np.random.default_rng(0).standard_normal((20, 3)).astype("float32")


def _save(index, path):
    index.add(POINTS)
    faiss.write_index(index, str(path))
    return path


@pytest.mark.parametrize("make", [lambda: faiss.IndexFlatL2(3), lambda: faiss.IndexHNSWFlat(3, 8)],
                         ids=["flat", "hnsw"])
def test_a_good_index_reads_back_with_its_points(tmp_path, make):
    index = read_faiss_index(_save(make(), tmp_path / "x.faiss"), dim=3, size=20)
    assert index.ntotal == 20 and index.d == 3
    _, nearest = index.search(POINTS[:2], 1)
    assert nearest[:, 0].tolist() == [0, 1]


def test_another_save_a_truncated_file_and_a_foreign_index_are_refused_by_name(tmp_path):
    path = _save(faiss.IndexFlatL2(3), tmp_path / "x.faiss")
    with pytest.raises(SaveError, match=r"x.faiss: an index of 20 points in 3 dimensions, but the LTAU state has 21"):
        read_faiss_index(path, dim=3, size=21)
    data = path.read_bytes()
    cut = tmp_path / "cut.faiss"
    cut.write_bytes(data[:-8])
    with pytest.raises(SaveError, match=r"cut.faiss: .* bytes, expected .* truncated or corrupt"):
        read_faiss_index(cut, dim=3, size=20)
    tiny = tmp_path / "tiny.faiss"
    tiny.write_bytes(data[:10])
    with pytest.raises(SaveError, match="too short for a faiss index"):
        read_faiss_index(tiny, dim=3, size=20)
    inner = tmp_path / "ip.faiss"  # the flat type with an inner-product metric (type 0) in its header
    inner.write_bytes(data[:33] + (0).to_bytes(4, "little") + data[37:])
    with pytest.raises(SaveError, match="ip.faiss: an index with metric type 0"):
        read_faiss_index(inner, dim=3, size=20)
    other = tmp_path / "other.faiss"
    other.write_bytes(b"IxXX" + data[4:])
    with pytest.raises(SaveError, match="not a flat or HNSW faiss index"):
        read_faiss_index(other, dim=3, size=20)
