"""Derived data follows its sources: a converted store is rebuilt when its features changed."""

from __future__ import annotations

import json
import logging
import os
import shutil

import numpy as np

from hierarchical_vl.data.feature_readers import RegionFeatureRecord
from hierarchical_vl.data.feature_store import source_changes, source_identity
from hierarchical_vl.data.feature_writers import write_bottom_up_tsv
from hierarchical_vl.evaluation.evaluation_data import open_region_store


def _records(count: int, width: int = 4) -> list[RegionFeatureRecord]:
    rng = np.random.default_rng(count)
    return [
        RegionFeatureRecord(
            image_id=str(index),
            boxes=np.array([[0, 0, 5, 5], [1, 1, 8, 8]], dtype=np.float32),
            features=rng.random((2, width), dtype=np.float32),
            width=10.0,
            height=10.0,
        )
        for index in range(count)
    ]


def test_a_changed_tsv_is_converted_again(tmp_path, caplog):
    tsv = tmp_path / "features.tsv"
    write_bottom_up_tsv(tsv, _records(5))
    store = open_region_store(tsv, progress=False)
    assert len(store) == 5 and store.feature_dim == 4
    recorded = store.metadata["source_identity"]
    assert recorded[0]["path"] == str(tsv.resolve()) and recorded[0]["size"] == tsv.stat().st_size
    assert open_region_store(tsv, progress=False).path == store.path  # unchanged: reused
    write_bottom_up_tsv(tsv, _records(3, width=6))  # fewer images, another width
    with caplog.at_level(logging.WARNING):
        store = open_region_store(tsv, progress=False)
    assert len(store) == 3 and store.feature_dim == 6
    assert "changed since" in caplog.text


def test_a_same_size_edit_is_seen(tmp_path):
    tsv = tmp_path / "features.tsv"
    write_bottom_up_tsv(tsv, _records(4))
    store = open_region_store(tsv, progress=False)
    data = bytearray(tsv.read_bytes())
    data[0:1] = b"9"  # image "0" becomes "9": same size
    stat = tsv.stat()
    tsv.write_bytes(bytes(data))
    os.utime(tsv, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old modification time
    assert source_changes(store.metadata["source_identity"], tsv) == [f"{tsv.resolve()}: content changed"]
    assert "9" in open_region_store(tsv, progress=False)


def test_a_directory_source_is_identified_by_its_files(tmp_path):
    folder = tmp_path / "npz"
    folder.mkdir()
    (folder / "a.npz").write_bytes(b"a")
    before = source_identity(folder)
    (folder / "b.npz").write_bytes(b"b")
    assert source_changes(before, folder)


def test_a_store_without_a_recorded_identity_opens_with_a_warning(tmp_path, caplog):
    tsv = tmp_path / "features.tsv"
    write_bottom_up_tsv(tsv, _records(5))
    store = open_region_store(tsv, progress=False)
    meta_file = store.path / "store.json"
    meta = json.loads(meta_file.read_text())
    del meta["source_identity"]  # as an older version wrote it
    meta_file.write_text(json.dumps(meta))
    write_bottom_up_tsv(tsv, _records(3))
    with caplog.at_level(logging.WARNING):
        old = open_region_store(tsv, progress=False)
    assert len(old) == 5  # opened as before
    assert "records no identity of its sources" in caplog.text
    shutil.rmtree(store.path)
