"""Region-feature stores check themselves: the index on open, checksums with ``hvl features verify``, a full disk and
two conversions racing for one destination give one clear line each (issue 11, items 7 and 8)."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest

from hierarchical_vl.cli import main as hvl
from hierarchical_vl.data import RegionFeatureStore, RegionFeatureStoreWriter
from hierarchical_vl.data import feature_store as feature_store_module
from hierarchical_vl.data.feature_readers import RegionFeatureError

WIDTH = 8


def _write_store(path, images=3, seed=0):
    rng = np.random.default_rng(seed)
    with RegionFeatureStoreWriter(path) as writer:
        for i in range(images):
            count = 2 + i
            boxes = np.tile(np.array([[0, 0, 10, 10]], np.float32), (count, 1))
            writer.add(str(i + 1), boxes, rng.standard_normal((count, WIDTH)), 100, 80)
    return path


def _rewrite_index(path, **changes):
    with np.load(path / "index.npz") as index:
        arrays = {name: index[name] for name in index.files}
    arrays.update(changes)
    np.savez(path / "index.npz", **arrays)


def _edit_meta(path, edit):
    meta = json.loads((path / "store.json").read_text())
    edit(meta)
    (path / "store.json").write_text(json.dumps(meta))


def _truncate(file, keep):
    data = file.read_bytes()
    file.write_bytes(data[:keep] if keep >= 0 else data[:keep])


DAMAGES = {
    "features truncated": ("features.f16", "truncated", lambda p: _truncate(p / "features.f16", -2)),
    "features too long": ("features.f16", "too long", lambda p: open(p / "features.f16", "ab").write(b"\0" * 16)),
    "features missing": ("features.f16", "missing", lambda p: (p / "features.f16").unlink()),
    "store.json not JSON": ("store.json", "not valid JSON", lambda p: (p / "store.json").write_text('{"format": ')),
    "store.json not UTF-8": ("store.json", "not UTF-8", lambda p: (p / "store.json").write_bytes(b'{"a": "\xff"}')),
    "store.json missing key": (
        "store.json",
        "missing feature_dim",
        lambda p: _edit_meta(p, lambda m: m.pop("feature_dim")),
    ),
    "store.json bad count": (
        "store.json",
        "'num_regions'",
        lambda p: _edit_meta(p, lambda m: m.update(num_regions="9")),
    ),
    "image count differs": ("index.npz", "image_ids", lambda p: _edit_meta(p, lambda m: m.update(num_images=4))),
    "boxes truncated": ("boxes.npy", "truncated or damaged", lambda p: _truncate(p / "boxes.npy", 100)),
    "index truncated": ("index.npz", "truncated or damaged", lambda p: _truncate(p / "index.npz", 50)),
    "offsets decrease": (
        "index.npz",
        "decrease at image 1",
        lambda p: _rewrite_index(p, offsets=np.array([0, 5, 2, 9])),
    ),
    "offsets beyond the data": (
        "index.npz",
        "expected 0 to 9",
        lambda p: _rewrite_index(p, offsets=np.array([0, 2, 5, 12])),
    ),
    "duplicate ids": (
        "index.npz",
        "duplicate image id '1'",
        lambda p: _rewrite_index(p, image_ids=np.array(["1", "2", "1"])),
    ),
    "NaN sizes": ("index.npz", "NaN", lambda p: _rewrite_index(p, sizes=np.full((3, 2), np.nan, np.float32))),
    "min_regions differs": ("index.npz", "min_regions", lambda p: _rewrite_index(p, offsets=np.array([0, 3, 6, 9]))),
}


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_a_damaged_store_is_refused_on_open_naming_the_file_and_the_problem(tmp_path, damage):
    member, problem, apply = DAMAGES[damage]
    path = _write_store(tmp_path / "store")
    apply(path)
    with pytest.raises(RegionFeatureError) as caught:
        RegionFeatureStore(path)
    message = str(caught.value)
    assert str(path / member) in message and problem in message, message
    assert hvl(["features", "verify", str(path)]) == 1


def test_opening_reads_the_index_only_not_the_features(tmp_path, monkeypatch):
    path = _write_store(tmp_path / "store")
    monkeypatch.setattr(feature_store_module, "file_sha256", lambda *_: pytest.fail("open must not hash the data"))
    store = RegionFeatureStore(path)
    assert len(store) == 3 and store.checksums is not None


def test_verify_recomputes_the_recorded_checksums_and_names_a_changed_file(tmp_path, capsys):
    path = _write_store(tmp_path / "store")
    meta = json.loads((path / "store.json").read_text())
    assert set(meta["sha256"]) == {"features.f16", "boxes.npy", "index.npz"}
    assert hvl(["features", "verify", str(path)]) == 0
    assert "every checksum matches" in capsys.readouterr().out
    data = bytearray((path / "features.f16").read_bytes())
    data[3] ^= 0x40  # same length: opening cannot tell, the checksum can
    (path / "features.f16").write_bytes(bytes(data))
    RegionFeatureStore(path)
    assert hvl(["features", "verify", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path / 'features.f16'}: sha256" in err and "boxes.npy" not in err, err


def test_a_store_of_the_older_version_opens_and_verify_says_its_checksums_are_unknown(tmp_path, capsys):
    path = _write_store(tmp_path / "store")
    _edit_meta(path, lambda meta: meta.pop("sha256"))  # exactly what the previous version wrote
    store = RegionFeatureStore(path)
    assert len(store) == 3 and store.checksums is None and store.verify() is None
    assert hvl(["features", "verify", str(path)]) == 3
    assert "checksums unknown" in capsys.readouterr().out


class _FullDisk:
    """A file whose writes fail with ENOSPC after ``room`` bytes."""

    def __init__(self, handle, room):
        self._handle, self._room = handle, room

    def write(self, data):
        self._room -= len(data)
        if self._room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._handle.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()

    def __getattr__(self, name):
        return getattr(self._handle, name)


@pytest.mark.parametrize("when", ["features", "boxes"])
def test_disk_full_while_converting_says_so_in_one_line_and_keeps_the_previous_store(
    demo, tmp_path, monkeypatch, capsys, when
):
    destination = tmp_path / "store"
    _write_store(destination, images=2, seed=1)
    before = {name: (destination / name).read_bytes() for name in ("features.f16", "boxes.npy", "index.npz")}
    if when == "features":
        monkeypatch.setattr(feature_store_module, "open", lambda *a, **k: _FullDisk(open(*a, **k), 2000), raising=False)
    else:

        def save(*_, **__):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(feature_store_module.np, "save", save)
    code = hvl(["features", "convert", str(demo.features_tsv), str(destination), "--overwrite", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    expected = f"disk full while writing {destination}; nothing was published; the previous store (if any) is intact"
    assert err == f"hvl features convert: error: {expected}", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # no temporary, no lock file left
    assert {name: (destination / name).read_bytes() for name in before} == before
    monkeypatch.undo()
    assert len(RegionFeatureStore(destination)) == 2


def test_a_second_conversion_into_the_same_destination_fails_fast(demo, tmp_path, capsys):
    destination = tmp_path / "store"
    first = RegionFeatureStoreWriter(destination)
    first.add("1", np.zeros((1, 4)), np.ones((1, WIDTH)), 10, 10)
    with pytest.raises(FileExistsError, match="another conversion is writing") as caught:
        RegionFeatureStoreWriter(destination)
    assert f"{destination}.lock" in str(caught.value)
    assert hvl(["features", "convert", str(demo.features_tsv), str(destination), "--no-progress"]) == 1
    assert "another conversion is writing" in capsys.readouterr().err
    first.close()  # the first one is unaffected and publishes, then releases the lock
    assert len(RegionFeatureStore(destination)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    assert hvl(["features", "convert", str(demo.features_tsv), str(destination), "--overwrite", "--no-progress"]) == 0
    aborted = RegionFeatureStoreWriter(tmp_path / "other")
    aborted.abort()  # an aborted writer releases it too
    RegionFeatureStoreWriter(tmp_path / "other").abort()
