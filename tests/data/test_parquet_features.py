"""Region features as Parquet: export, typed streaming load, import back, the shuffled stream, the Hub (mocked)."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import sys

import huggingface_hub
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from hierarchical_vl.data import (
    EncodedCaptionDataset,
    EncodedVQADataset,
    RegionFeatureError,
    RegionFeatureStore,
    RegionFeatureStoreWriter,
    RetrievalCollator,
    StreamingBatches,
    StreamingRegionFeatures,
    VQACollator,
    export_store_to_parquet,
    import_parquet_to_store,
    load_region_features,
    publish_feature_dataset,
)

ENDPOINT = "https://hub.test"
REPO_ID = "someone/region-features"


@pytest.fixture(scope="module")
def small_store(tmp_path_factory) -> RegionFeatureStore:
    """17 images with 1-6 regions of width 8 and float32 boxes of arbitrary (valid) coordinates."""
    path = tmp_path_factory.mktemp("parquet") / "store"
    rng = np.random.default_rng(0)
    with RegionFeatureStoreWriter(path, feature_dim=8, metadata={"sources": ["/data/trainval_36/part.tsv"]}) as w:
        for i in range(17):
            k = int(rng.integers(1, 7))
            corners = np.sort(rng.random((k, 2, 2)) * 500, axis=1)  # (K, 2 corners, x y)
            boxes = corners.reshape(k, 4)  # x1 y1 x2 y2 with x1 <= x2, y1 <= y2
            w.add(f"{i:03d}x", boxes, rng.standard_normal((k, 8)) * 3, 640 + i, 480 - i)
    return RegionFeatureStore(path)


@pytest.fixture(scope="module")
def exported(small_store, tmp_path_factory):
    return export_store_to_parquet(
        small_store, tmp_path_factory.mktemp("export") / "out", rows_per_shard=5, progress=False
    )


def test_export_shards_and_typed_streaming_rows(small_store, exported):
    assert exported.files == [f"data/train-0000{i}-of-00004.parquet" for i in range(4)]
    assert exported.num_images == 17 and exported.num_regions == small_store.padding_row
    schema = pq.read_schema(exported.path / exported.files[0])
    embedded = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert embedded["features"]["feature"]["feature"]["dtype"] == "float16"
    assert embedded["features"]["feature"]["length"] == 8
    manifest = json.loads((exported.path / "region_features.json").read_text())
    for name in exported.files:
        assert manifest["files"][name]["sha256"] == hashlib.sha256((exported.path / name).read_bytes()).hexdigest()

    import datasets

    files = [str(exported.path / name) for name in exported.files]
    plain = datasets.load_dataset("parquet", data_files=files, split="train", streaming=True)
    assert plain.features["features"] == datasets.List(datasets.List(datasets.Value("float16"), length=8))
    assert plain.features["width"] == datasets.Value("int32")
    stream = load_region_features(exported.path)
    assert isinstance(stream, datasets.IterableDataset)
    rows = list(stream)
    assert [row["image_id"] for row in rows] == small_store.image_ids.tolist()
    for index, row in enumerate(rows):
        item = small_store[small_store.image_ids[index]]
        assert np.array_equal(np.asarray(row["features"], dtype=np.float16), item["features"])
        assert np.array_equal(np.asarray(row["boxes"], dtype=np.float32), item["boxes"])
        assert (row["width"], row["height"]) == (640 + index, 480 - index)
    arrow = next(iter(stream.with_format("arrow").iter(batch_size=3)))
    assert arrow.schema.field("features").type.value_type.value_type == pa.float16()
    only_ids = load_region_features(exported.path, columns=["image_id"], streaming=False)
    assert only_ids.column_names == ["image_id"] and len(only_ids) == 17


def test_import_round_trip_is_bitwise(small_store, exported, tmp_path):
    store = import_parquet_to_store(exported.path, tmp_path / "back", progress=False)
    assert store.image_ids.tolist() == small_store.image_ids.tolist()
    assert np.asarray(store.features).tobytes() == np.asarray(small_store.features).tobytes()
    assert np.asarray(store.boxes).tobytes() == np.asarray(small_store.boxes).tobytes()
    assert np.array_equal(store.offsets, small_store.offsets) and np.array_equal(store.sizes, small_store.sizes)
    assert store.metadata["exported_from"]["sources"] == ["/data/trainval_36/part.tsv"]
    assert store.verify() == []


def test_export_refuses_a_directory_that_is_not_an_export(small_store, tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a Parquet export"):
        export_store_to_parquet(small_store, tmp_path / "other", overwrite=True, progress=False)
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"
    first = export_store_to_parquet(small_store, tmp_path / "again", progress=False)
    export_store_to_parquet(small_store, first.path, overwrite=True, rows_per_shard=100, progress=False)
    assert sorted(p.name for p in (first.path / "data").iterdir()) == ["train-00000-of-00001.parquet"]


def test_bad_files_are_named(exported, tmp_path):
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(RegionFeatureError, match=r"broken\.parquet, file: not a readable Parquet file"):
        load_region_features([broken])
    wrong = tmp_path / "wrong.parquet"
    pq.write_table(pa.table({"image_id": ["1"], "boxes": [[[0.0, 0, 1, 1]]]}), wrong)
    with pytest.raises(RegionFeatureError, match=r"wrong\.parquet, schema: missing columns \['width', 'height'"):
        import_parquet_to_store([wrong], tmp_path / "store", progress=False)
    # A row whose features are not finite in float16: the writer's problem, with the file and the row.
    table = pq.read_table(exported.path / exported.files[1])
    features = table.column("features").combine_chunks()
    values = features.flatten().flatten().to_numpy().copy()
    values[-1] = np.inf
    inner = pa.FixedSizeListArray.from_arrays(pa.array(values), 8)
    bad = table.set_column(4, table.schema.field("features"), pa.ListArray.from_arrays(features.offsets, inner))
    pq.write_table(bad, tmp_path / "inf.parquet")
    with pytest.raises(RegionFeatureError, match=r"inf\.parquet, row 4 \(image '009x'\): .*NaN, inf"):
        import_parquet_to_store([tmp_path / "inf.parquet"], tmp_path / "store2", progress=False)
    assert not (tmp_path / "store2").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no data/train-"):
        load_region_features(tmp_path / "empty")


def _window_ids(stream) -> list[list[str]]:
    return [window.image_ids.tolist() for window in stream]


def test_shuffle_buffer_is_seeded_complete_and_resumable(small_store, exported):
    def stream(seed):
        return StreamingRegionFeatures(exported.path, buffer_size=6, seed=seed, window_images=4)

    first, again, other = _window_ids(stream(1)), _window_ids(stream(1)), _window_ids(stream(2))
    assert first == again and first != other
    assert [len(w) for w in first] == [4, 4, 4, 4, 1]
    flat = sum(first, [])
    assert sorted(flat) == sorted(small_store.image_ids.tolist()) and flat != small_store.image_ids.tolist()
    unshuffled = sum(_window_ids(StreamingRegionFeatures(exported.path, buffer_size=1, window_images=5)), [])
    assert unshuffled == small_store.image_ids.tolist()

    # Stop after two windows, save the state, resume in a new stream: the rest, identically.
    source = stream(1)
    windows = iter(source)
    head = [next(windows).image_ids.tolist() for _ in range(2)]
    state = source.state_dict()
    assert state["images_emitted"] == 8 and state["epoch"] == 0
    resumed = stream(0)
    resumed.load_state_dict(json.loads(json.dumps(state)))
    assert head + _window_ids(resumed) == first
    assert resumed.epoch == 1 and _window_ids(resumed) != first  # the next epoch shuffles anew

    # A window is a store: its regions equal the store's.
    window = next(iter(stream(1)))
    for i, image_id in enumerate(window.image_ids.tolist()):
        assert np.array_equal(window[image_id]["features"], small_store[image_id]["features"])
        assert window.source_positions[i] == small_store.index_of(image_id)
    rows, mask = window.region_rows(np.arange(len(window)), 3)
    reference_rows, _ = small_store.region_rows(window.source_positions, 3)
    assert np.array_equal(window.read_rows(rows), small_store.read_rows(reference_rows))


def _vqa_rows(store: RegionFeatureStore, per_image: int = 3) -> list[dict]:
    rows = []
    for i, image_id in enumerate(store.image_ids.tolist()):
        for k in range(per_image):
            answer = ["yes", "no", "two"][(i + k) % 3]
            rows.append(
                {
                    "question_id": i * 10 + k,
                    "image_id": image_id,
                    "question": f"is there a {answer} thing {k}?",
                    "question_type": "is there a",
                    "answer_type": "yes/no",
                    "multiple_choice_answer": answer,
                    "answers": [{"answer": answer, "answer_confidence": "yes", "answer_id": j + 1} for j in range(10)],
                    "labels": [(i + k) % 3],
                    "scores": [1.0],
                }
            )
    return rows


@pytest.fixture(scope="module")
def word_tokenizer():
    from hierarchical_vl import HierarchicalVLTokenizer

    return HierarchicalVLTokenizer.from_texts(["is there a yes no two thing 0 1 2 ?", "a caption of image"])


def test_streaming_vqa_batches_equal_the_store_collators(small_store, exported, word_tokenizer):
    rows = _vqa_rows(small_store)
    vocab = ["yes", "no", "two"]
    stream = StreamingRegionFeatures(exported.path, buffer_size=5, seed=3, window_images=6)
    streamed = EncodedVQADataset(rows, stream.catalogue(), word_tokenizer, answer_vocab=vocab)
    reference = EncodedVQADataset(rows, small_store, word_tokenizer, answer_vocab=vocab)
    collator = functools.partial(VQACollator, max_regions=4)
    batches = StreamingBatches(streamed, stream, collator, batch_size=5, seed=0)
    seen = []
    for batch in batches:
        ids = batch["metadata"]["question_id"]
        seen += ids
        expected = VQACollator(reference, max_regions=4)(np.asarray([r // 10 * 3 + r % 10 for r in ids]))
        for name in ("input_ids", "region_features", "region_mask", "region_boxes", "labels"):
            assert torch.equal(batch[name], expected[name]), name
        assert batch["metadata"]["image_id"] == expected["metadata"]["image_id"]
    assert sorted(seen) == sorted(row["question_id"] for row in rows)  # every question once per epoch

    # Resume mid-window: the rest of the batches, the same ones.
    stream_a = StreamingRegionFeatures(exported.path, buffer_size=5, seed=3, window_images=6)
    stream_b = StreamingRegionFeatures(exported.path, buffer_size=5, seed=3, window_images=6)
    full = [b["metadata"]["question_id"] for b in StreamingBatches(streamed, stream_a, collator, 5)]
    stream_a.set_epoch(0)
    partial = StreamingBatches(streamed, stream_a, collator, 5)
    iterator = iter(partial)
    head = [next(iterator)["metadata"]["question_id"] for _ in range(5)]
    state = json.loads(json.dumps(partial.state_dict()))
    assert state["batches_in_window"] == 1  # 18 questions per window: 4 batches, the fifth opens window 2
    resumed = StreamingBatches(streamed, stream_b, collator, 5)
    resumed.load_state_dict(state)
    assert head + [b["metadata"]["question_id"] for b in resumed] == full


def test_streaming_retrieval_batches_read_each_caption_image(small_store, exported, word_tokenizer):
    rows = [
        {"image_id": i, "caption": "a caption of image", "sentence_id": n}
        for n, i in enumerate(small_store.image_ids.tolist())
    ]
    stream = StreamingRegionFeatures(exported.path, buffer_size=4, seed=1, window_images=5)
    captions = EncodedCaptionDataset(rows, stream.catalogue(), word_tokenizer)
    total = 0
    for batch in StreamingBatches(captions, stream, RetrievalCollator, batch_size=4):
        size = batch["metadata"]["pair"].count("positive")
        for row, image_id in enumerate(batch["metadata"]["image_id"][:size]):
            count = min(int(small_store.num_regions[small_store.index_of(image_id)]), 100)
            assert torch.equal(
                batch["region_features"][row, :count],
                torch.from_numpy(np.array(small_store[image_id]["features"][:count])),
            )
        total += size
    assert total == 17


# ---------------------------------------------------------------------------------------------------------------
# The Hub, through a mock transport
# ---------------------------------------------------------------------------------------------------------------
def _http_module():
    return sys.modules[type(huggingface_hub.get_session()).__module__.split(".")[0]]


class DatasetHub:
    """Answers the dataset endpoints of a publish, a download and a remote read (ranges), keeping the files."""

    def __init__(self, files: dict[str, bytes] | None = None):
        self.http = _http_module()
        self.files = dict(files or {})
        self.requests: list[tuple[str, str, dict, bytes]] = []

    def siblings(self) -> list[dict]:
        return [
            {"rfilename": name, "type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
            for name, data in sorted(self.files.items())
        ]

    def _directory(self, prefix: str) -> list[dict]:
        entries = [e for e in self.siblings() if e["path"].startswith(f"{prefix}/" if prefix else "")]
        if not prefix:
            entries = [e for e in entries if "/" not in e["path"]]
            entries += [{"type": "directory", "path": d, "oid": "d" * 40} for d in {"data"}]
        return entries

    def __call__(self, request):
        body = request.read()
        path = request.url.path
        self.requests.append((request.method, path, dict(request.headers), body))
        base = f"/api/datasets/{REPO_ID}"
        if path == "/api/repos/create":
            payload = json.loads(body)
            assert payload["type"] == "dataset"
            return self.http.Response(200, json={"url": f"{ENDPOINT}/datasets/{REPO_ID}"})
        if path == "/api/validate-yaml":
            return self.http.Response(200, json={"errors": [], "warnings": []})
        if path.startswith(f"{base}/preupload/"):
            modes = [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in json.loads(body)["files"]
            ]
            return self.http.Response(200, json={"files": modes})
        if path.startswith(f"{base}/commit/"):
            for line in body.decode().splitlines():
                entry = json.loads(line)
                if entry["key"] == "file":
                    self.files[entry["value"]["path"]] = base64.b64decode(entry["value"]["content"])
            return self.http.Response(
                200,
                json={
                    "commitUrl": f"{ENDPOINT}/datasets/{REPO_ID}/commit/{'b' * 40}",
                    "commitOid": "b" * 40,
                    "pullRequestUrl": None,
                },
            )
        if path == base or path.startswith(f"{base}/revision/"):
            return self.http.Response(200, json={"id": REPO_ID, "sha": "c" * 40, "siblings": self.siblings()})
        if path.startswith(f"{base}/paths-info/"):
            form = dict(item.split("=", 1) for item in body.decode().split("&") if "=" in item)
            from urllib.parse import unquote_plus

            wanted = {unquote_plus(v) for k, v in form.items() if k == "paths"} if form else set()
            if not wanted and body:
                try:
                    wanted = set(json.loads(body).get("paths", []))
                except ValueError:
                    wanted = set()
            infos = [entry for entry in self.siblings() if entry["path"] in wanted]
            infos += [{"type": "directory", "path": d, "oid": "d" * 40} for d in wanted if d in ("data", "")]
            return self.http.Response(200, json=infos)
        if path.startswith(f"{base}/tree/"):
            rest = path[len(f"{base}/tree/") :].split("/", 1)
            prefix = rest[1] if len(rest) > 1 else ""
            if request.url.params.get("recursive") in ("1", "true", "True"):
                return self.http.Response(200, json=[e for e in self.siblings() if e["path"].startswith(prefix)])
            return self.http.Response(200, json=self._directory(prefix))
        prefix = f"/datasets/{REPO_ID}/resolve/"
        if path.startswith(prefix):
            name = path[len(prefix) :].split("/", 1)[1]
            if name not in self.files:
                return self.http.Response(404, headers={"x-error-code": "EntryNotFound"})
            data = self.files[name]
            headers = {
                "x-repo-commit": "c" * 40,
                "etag": f'"{hashlib.sha1(data).hexdigest()}"',
                "content-length": str(len(data)),
                "accept-ranges": "bytes",
            }
            wanted = request.headers.get("range")
            if wanted and request.method == "GET":
                first, _, last = wanted.removeprefix("bytes=").partition("-")
                start = int(first) if first else max(0, len(data) - int(last))
                end = min(int(last) + 1, len(data)) if first and last else len(data)
                headers.update(
                    {"content-range": f"bytes {start}-{end - 1}/{len(data)}", "content-length": str(end - start)}
                )
                return self.http.Response(206, headers=headers, content=data[start:end])
            return self.http.Response(200, headers=headers, content=b"" if request.method == "HEAD" else data)
        return self.http.Response(404, json={"error": f"not found: {path}"})


@pytest.fixture
def dataset_hub():
    http = _http_module()

    def install(files=None) -> DatasetHub:
        hub = DatasetHub(files)
        huggingface_hub.set_client_factory(lambda: http.Client(transport=http.MockTransport(hub)))
        return hub

    yield install
    default = getattr(huggingface_hub.utils._http, "default_client_factory", None)
    huggingface_hub.set_client_factory(default or (lambda: http.Client()))


def test_publish_uploads_the_export_and_a_card(small_store, dataset_hub, tmp_path):
    hub = dataset_hub()
    info = publish_feature_dataset(
        small_store,
        REPO_ID,
        export_dir=tmp_path / "export",
        rows_per_shard=10,
        private=True,
        token="hf_test",
        endpoint=ENDPOINT,
        progress=False,
    )
    assert info.oid == "b" * 40
    assert sorted(hub.files) == [
        "README.md",
        "data/train-00000-of-00002.parquet",
        "data/train-00001-of-00002.parquet",
        "region_features.json",
    ]
    for name, data in hub.files.items():
        assert (tmp_path / "export" / name).read_bytes() == data
    card = hub.files["README.md"].decode()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}
    ]
    features = {entry["name"]: entry for entry in metadata["dataset_info"]["features"]}
    assert features["features"] == {"name": "features", "list": {"list": "float16", "length": 8}}
    assert metadata["dataset_info"]["splits"][0]["num_examples"] == 17
    assert f"17 images, {small_store.padding_row} regions" in card
    assert "- `part.tsv`" in card
    for name in ("data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"):
        assert f"| `{name}` | `{hashlib.sha256(hub.files[name]).hexdigest()}` |" in card
    assert small_store.checksums["features.f16"] in card
    # The card's configuration is what `datasets` reads from the repository layout.
    import datasets

    from_card = datasets.load_dataset(str(tmp_path / "export"), split="train", streaming=True)
    assert from_card.features == datasets.Features(
        {
            "image_id": datasets.Value("string"),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            "boxes": datasets.List(datasets.List(datasets.Value("float32"), length=4)),
            "features": datasets.List(datasets.List(datasets.Value("float16"), length=8)),
        }
    )
    assert [row["image_id"] for row in from_card] == small_store.image_ids.tolist()


def test_load_and_import_from_the_hub(small_store, exported, dataset_hub, tmp_path):
    files = {name: (exported.path / name).read_bytes() for name in exported.files}
    files["README.md"] = b"---\n---\n"
    dataset_hub(files)
    options = {"endpoint": ENDPOINT, "token": "hf_test", "cache_dir": tmp_path / "cache"}
    rows = list(load_region_features(REPO_ID, **options))
    assert [row["image_id"] for row in rows] == small_store.image_ids.tolist()
    store = import_parquet_to_store(f"hf://datasets/{REPO_ID}@main", tmp_path / "store", progress=False, **options)
    assert np.asarray(store.features).tobytes() == np.asarray(small_store.features).tobytes()
    stream = StreamingRegionFeatures(REPO_ID, buffer_size=3, seed=0, window_images=8, **options)
    assert sorted(sum(_window_ids(stream), [])) == sorted(small_store.image_ids.tolist())
    with pytest.raises(FileNotFoundError, match="no data/validation-"):
        load_region_features(REPO_ID, "validation", **options)


def test_command_line_export_import_and_errors(small_store, tmp_path, capsys):
    from hierarchical_vl.cli import main

    assert (
        main(
            [
                "features",
                "export-parquet",
                str(small_store.path),
                str(tmp_path / "out"),
                "--rows-per-shard",
                "9",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "17 images" in capsys.readouterr().out
    assert main(["features", "import-parquet", str(tmp_path / "out"), str(tmp_path / "back"), "--no-progress"]) == 0
    assert np.asarray(RegionFeatureStore(tmp_path / "back").features).tobytes() == (
        np.asarray(small_store.features).tobytes()
    )
    (tmp_path / "bad.parquet").write_bytes(b"nope")
    assert (
        main(["features", "import-parquet", str(tmp_path / "bad.parquet"), str(tmp_path / "x"), "--no-progress"]) == 1
    )
    assert "bad.parquet, file: not a readable Parquet file" in capsys.readouterr().err


def test_remote_streaming_reads_byte_ranges_without_a_local_copy(small_store, exported, dataset_hub, tmp_path):
    files = {name: (exported.path / name).read_bytes() for name in exported.files}
    hub = dataset_hub(files)
    options = {"endpoint": ENDPOINT, "token": "hf_test", "cache_dir": tmp_path / "cache", "download": False}
    stream = StreamingRegionFeatures(REPO_ID, buffer_size=3, seed=0, window_images=8, **options)
    catalogue = stream.catalogue()
    assert catalogue.image_ids.tolist() == small_store.image_ids.tolist()
    assert np.array_equal(catalogue.boxes, small_store.boxes) and np.array_equal(catalogue.sizes, small_store.sizes)
    ranges = [call for call in hub.requests if "/resolve/" in call[1] and call[2].get("range")]
    assert ranges and not any(call[2].get("range") is None and "/resolve/" in call[1] for call in hub.requests)
    windows = list(stream)
    assert sorted(sum((w.image_ids.tolist() for w in windows), [])) == sorted(small_store.image_ids.tolist())
    for window in windows:
        for image_id in window.image_ids.tolist():
            assert np.array_equal(window[image_id]["features"], small_store[image_id]["features"])
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.parquet"))
    with pytest.raises(ValueError, match="needs streaming=True"):
        load_region_features(REPO_ID, streaming=False, **options)


def test_a_datasets_stream_gives_the_same_windows_as_the_files(exported):
    from_files = StreamingRegionFeatures(exported.path, buffer_size=6, seed=4, window_images=5)
    given = StreamingRegionFeatures(load_region_features(exported.path), buffer_size=6, seed=4, window_images=5)
    assert _window_ids(from_files) == _window_ids(given)
    assert np.array_equal(given.catalogue().boxes, from_files.catalogue().boxes)


def test_a_bad_row_in_the_stream_is_named(exported, tmp_path):
    table = pq.read_table(exported.path / exported.files[0])
    boxes = table.column("boxes").combine_chunks()
    offsets = boxes.offsets.to_numpy().copy()
    offsets[3:] = offsets[2]  # rows 2.. lose their regions
    inner = boxes.flatten()
    empty = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), inner)
    features = table.column("features").combine_chunks()
    feature_rows = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), features.flatten())
    bad = table.set_column(3, table.schema.field("boxes"), empty).set_column(
        4, table.schema.field("features"), feature_rows
    )
    (tmp_path / "data").mkdir()
    pq.write_table(bad, tmp_path / "data" / "train-00000-of-00001.parquet")
    stream = StreamingRegionFeatures(tmp_path, buffer_size=2, window_images=2)
    with pytest.raises(RegionFeatureError, match=r"train-00000-of-00001\.parquet, row 2 \(image '002x'\): no regions"):
        list(stream)


def test_command_line_publish_and_a_failed_upload(small_store, dataset_hub, tmp_path, capsys, monkeypatch):
    from hierarchical_vl.cli import main

    monkeypatch.setenv("HF_ENDPOINT", ENDPOINT)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", ENDPOINT)
    hub = dataset_hub()
    command = [
        "features",
        "publish",
        str(small_store.path),
        REPO_ID,
        "--private",
        "--token",
        "hf_test",
        "--no-progress",
    ]
    assert main(command) == 0
    assert f"as the dataset {REPO_ID}" in capsys.readouterr().out
    assert "README.md" in hub.files and "data/train-00000-of-00001.parquet" in hub.files
    ((_, _, headers, body),) = [call for call in hub.requests if call[1] == "/api/repos/create"]
    created = json.loads(body)
    assert created.get("private") is True or created.get("visibility") == "private"
    assert headers["authorization"] == "Bearer hf_test"
    assert main(command[:3] + ["nobody/x/y"] + command[4:]) == 1
    assert "hvl features publish: error:" in capsys.readouterr().err


def test_streaming_grounding_batches_equal_the_store_collators(small_store, exported, word_tokenizer):
    from hierarchical_vl.data import EncodedGroundingDataset, GroundingCollator

    rows = []
    for i, image_id in enumerate(small_store.image_ids.tolist()):
        box = small_store[image_id]["boxes"][0].tolist()  # the first region: a positive label
        sentence = "a caption of image"
        phrase = {"phrase": "a caption", "phrase_id": str(i), "box_status": "box", "boxes": [box]}
        rows.append(
            {
                "image_id": image_id,
                "sentence_index": 0,
                "sentence": sentence,
                "phrases": [{**phrase, "char_start": 0, "char_end": 9}],
            }
        )
    stream = StreamingRegionFeatures(exported.path, buffer_size=4, seed=2, window_images=6)
    streamed = EncodedGroundingDataset(rows, stream.catalogue(), word_tokenizer)
    reference = EncodedGroundingDataset(rows, small_store, word_tokenizer)
    assert np.array_equal(streamed.phrase_first_positive, reference.phrase_first_positive)
    seen = []
    for batch in StreamingBatches(streamed, stream, GroundingCollator, batch_size=4):
        order = [small_store.index_of(image_id) for image_id in batch["metadata"]["image_id"]]
        expected = GroundingCollator(reference)(np.asarray(order))
        for name in ("input_ids", "region_features", "region_mask", "region_boxes", "labels", "phrase_spans"):
            assert torch.equal(batch[name], expected[name]), name
        assert batch["labels"][:, 0, 0].eq(1).all()
        seen += batch["metadata"]["image_id"]
    assert sorted(seen) == sorted(small_store.image_ids.tolist())
