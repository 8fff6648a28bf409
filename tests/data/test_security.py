"""Files from strangers: no code runs from a feature file, --overwrite replaces only a store, no name escapes.

The malicious payloads are real: unpickling them with the standard unpickler would run ``touch`` on a marker file.
"""

from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import pytest

from hierarchical_vl.cli import main as hvl
from hierarchical_vl.data import RegionFeatureError, generate_demo_corpus, open_region_feature_reader
from hierarchical_vl.data.feature_readers import RegionFeatureRecord
from hierarchical_vl.data.feature_writers import write_bottom_up_tsv, write_npz_directory
from hierarchical_vl.evaluation.evaluation_data import open_region_store


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return generate_demo_corpus(root, num_images=10, feature_dim=8, feature_formats=("tsv", "lmdb", "npz-dir"))


def _poisoned_lmdb(corpus, tmp_path, marker):
    import lmdb

    path = tmp_path / "poisoned.lmdb"
    shutil.copytree(corpus.extra_features["lmdb"], path)
    env = lmdb.open(str(path), subdir=True)
    with env.begin(write=True) as txn:
        key = next(k for k, _ in txn.cursor() if k != b"keys")
        value = pickle.loads(txn.get(key))  # our own file: the standard unpickler is safe here
        value["extra"] = _Evil(marker)
        txn.put(key, pickle.dumps(value))
    env.close()
    assert pickle.loads(pickle.dumps(_Evil(tmp_path / "probe"))) == 0  # the payload is live ...
    assert (tmp_path / "probe").exists()  # ... with the full unpickler
    return path, key.decode()


def _poisoned_npy_directory(tmp_path, marker):
    path = tmp_path / "poisoned_npy"
    path.mkdir()
    np.save(path / "42.npy", np.ones((3, 8), dtype=np.float32))
    info = {"image_w": 100, "image_h": 80, "num_boxes": 3, "boxes": np.zeros((3, 4), np.float32), "x": _Evil(marker)}
    np.save(path / "42_info.npy", np.array(info, dtype=object), allow_pickle=True)
    return path


def test_lmdb_payload_is_refused_by_the_reader_and_names_file_and_key(corpus, tmp_path):
    marker = tmp_path / "pwned"
    path, key = _poisoned_lmdb(corpus, tmp_path, marker)
    with pytest.raises(RegionFeatureError) as raised:
        list(open_region_feature_reader(path, format="lmdb"))
    assert not marker.exists()
    message = str(raised.value)
    assert str(path) in message and key in message and "system" in message


def test_npy_info_payload_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = _poisoned_npy_directory(tmp_path, marker)
    with pytest.raises(RegionFeatureError, match="42_info.npy"):
        list(open_region_feature_reader(path, format="npz-dir"))
    assert not marker.exists()


def test_no_entry_point_runs_the_payload(corpus, tmp_path, capsys):
    marker = tmp_path / "pwned"
    lmdb_path, _ = _poisoned_lmdb(corpus, tmp_path, marker)
    npy_path = _poisoned_npy_directory(tmp_path, marker)
    # hvl features convert
    assert hvl(["features", "convert", str(lmdb_path), str(tmp_path / "a.store"), "--no-progress"]) == 1
    assert hvl(["features", "convert", str(npy_path), str(tmp_path / "b.store"), "--no-progress"]) == 1
    assert "system" in capsys.readouterr().err
    # hvl evaluate --features and hvl train data.features=... convert through the one store opener
    for source in (lmdb_path, npy_path):
        with pytest.raises(RegionFeatureError):
            open_region_store(source, tmp_path / f"{source.name}.store", progress=False)
    assert not marker.exists()
    assert not (tmp_path / "a.store").exists() and not (tmp_path / "b.store").exists()


def test_legitimate_lmdb_and_npz_stores_still_read(corpus):
    reference = {r.image_id: r for r in open_region_feature_reader(corpus.features_tsv)}
    for name in ("lmdb", "npz-dir"):
        records = {r.image_id: r for r in open_region_feature_reader(corpus.extra_features[name], format=name)}
        assert records.keys() == reference.keys()
        for image_id, record in records.items():
            np.testing.assert_allclose(record.features, reference[image_id].features, rtol=1e-6)


def test_overwrite_replaces_only_a_store(corpus, tmp_path):
    project = tmp_path / "my_project"
    project.mkdir()
    (project / "notes.txt").write_text("years of work")
    assert hvl(["features", "convert", str(corpus.features_tsv), str(project), "--overwrite", "--no-progress"]) == 1
    assert (project / "notes.txt").read_text() == "years of work"
    store = tmp_path / "features.store"
    assert hvl(["features", "convert", str(corpus.features_tsv), str(store), "--no-progress"]) == 0
    assert hvl(["features", "convert", str(corpus.features_tsv), str(store), "--overwrite", "--no-progress"]) == 0
    assert (store / "store.json").exists()


@pytest.mark.parametrize("image_id", ["../../escaped", "/abs/path", "a/b", "..", "", "nul\0byte"])
def test_writers_confine_names_to_their_directory(tmp_path, image_id):
    out = tmp_path / "deep" / "out"
    record = RegionFeatureRecord(image_id, 10.0, 10.0, np.zeros((1, 4), np.float32), np.ones((1, 8), np.float32))
    with pytest.raises(ValueError, match="image id"):
        write_npz_directory(out, [record])
    assert not out.exists() and not (tmp_path / "escaped.npz").exists()
    assert sorted(p.name for p in tmp_path.rglob("*.npz")) == []


def test_tsv_writer_refuses_ids_its_format_cannot_hold(tmp_path):
    record = RegionFeatureRecord("a\tb", 10.0, 10.0, np.zeros((1, 4), np.float32), np.ones((1, 8), np.float32))
    with pytest.raises(ValueError, match="image id"):
        write_bottom_up_tsv(tmp_path / "f.tsv", [record])


def test_split_lists_naming_other_directories_are_refused(corpus, tmp_path):
    from hierarchical_vl.data import load_flickr30k_entities

    root = tmp_path / "entities"
    shutil.copytree(corpus.entities_root, root)
    with open(root / "train.txt", "a", encoding="utf-8") as handle:
        handle.write("../../outside\n")
    with pytest.raises(ValueError, match=r"train\.txt.*line"):
        load_flickr30k_entities(root, split="train", cache_dir=tmp_path / "cache")
