"""``hvl features extract`` / ``compare`` / ``convert-detector`` on generated images with a tiny random detector."""

import json

import numpy as np
import pytest
from PIL import Image

from hierarchical_vl.cli import main
from hierarchical_vl.data.feature_readers import open_region_feature_reader
from hierarchical_vl.data.feature_store import RegionFeatureStore
from hierarchical_vl.extraction import RegionFeatureExtractor
from hierarchical_vl.extraction.image_sources import collect_images
from hierarchical_vl.extraction.store_extraction import extract_to_store


@pytest.fixture()
def image_dir(tmp_path, images):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"COCO_val2014_{i + 1:012d}.jpg", quality=95)
    return folder


def test_extract_a_folder_into_a_store_and_tsv(tmp_path, image_dir, tiny_extractor):
    store_dir, tsv = tmp_path / "store", tmp_path / "features.tsv"
    argv = ["features", "extract", str(image_dir), str(store_dir), "--detector", "preset:tiny", "--no-progress"]
    assert main([*argv, "--tsv", str(tsv), "--batch-size", "2", "--chunk-size", "2"]) == 0
    store = RegionFeatureStore(store_dir)
    assert store.image_ids.tolist() == ["1", "2", "3", "4", "5"]
    assert store.feature_dim == tiny_extractor.config.feature_dim
    assert not (tmp_path / "store.parts").exists()
    direct = tiny_extractor([str(p) for p in sorted(image_dir.iterdir())])
    for image_id, regions in zip(store.image_ids.tolist(), direct):
        item = store[image_id]
        np.testing.assert_allclose(item["boxes"], regions.boxes, atol=1e-4)
        np.testing.assert_allclose(item["features"], regions.features, rtol=2e-3, atol=2e-3)  # float16
        assert (item["width"], item["height"]) == (regions.width, regions.height)
    assert store.metadata["extractor"]["mode"] == "detected boxes"
    records = list(open_region_feature_reader(tsv, "tsv"))
    assert [r.image_id for r in records] == store.image_ids.tolist()
    np.testing.assert_allclose(records[0].features, store["1"]["features"].astype(np.float32))
    assert main(argv) == 1  # exists


def test_resume_after_a_crash_does_not_redo_finished_images(tmp_path, image_dir):
    images = collect_images([image_dir])
    extractor = RegionFeatureExtractor.from_preset("tiny")
    calls = []

    def crash_after_first_part(count):
        calls.append(count)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_to_store(
            extractor,
            images,
            tmp_path / "s",
            batch_size=2,
            chunk_size=2,
            progress=False,
            on_chunk=crash_after_first_part,
        )
    assert calls == [2] and not (tmp_path / "s").exists()
    report = extract_to_store(extractor, images, tmp_path / "s", batch_size=2, chunk_size=2, progress=False)
    assert (report.resumed, report.extracted, report.merged) == (2, 3, True)
    assert len(RegionFeatureStore(tmp_path / "s")) == 5
    other = RegionFeatureExtractor.from_preset("tiny", seed=9)
    with pytest.raises(KeyboardInterrupt):
        extract_to_store(other, images, tmp_path / "t", chunk_size=1, progress=False, on_chunk=crash_after_first_part)
    with pytest.raises(ValueError, match="another detector"):
        extract_to_store(extractor, images, tmp_path / "t", progress=False)


def test_shards_write_their_parts_and_the_last_merges(tmp_path, image_dir):
    images = collect_images([image_dir])
    extractor = RegionFeatureExtractor.from_preset("tiny")
    first = extract_to_store(extractor, images, tmp_path / "s", num_shards=2, shard_index=1, progress=False)
    assert (first.extracted, first.merged, first.pending) == (2, False, 3)
    second = extract_to_store(extractor, images, tmp_path / "s", num_shards=2, shard_index=0, progress=False)
    assert (second.extracted, second.merged) == (3, True)
    single = tmp_path / "single"
    extract_to_store(extractor, images, single, progress=False)
    a, b = RegionFeatureStore(tmp_path / "s"), RegionFeatureStore(single)
    assert a.image_ids.tolist() == b.image_ids.tolist()
    np.testing.assert_array_equal(np.asarray(a.features), np.asarray(b.features))


def test_given_boxes_mode_and_annotation_image_lists(tmp_path, image_dir):
    karpathy = {
        "images": [
            {"filename": p.name, "filepath": "photos", "split": "test", "sentences": [], "cocoid": int(p.stem[-12:])}
            for p in sorted(image_dir.iterdir())[:2]
        ]
    }
    (tmp_path / "dataset_coco.json").write_text(json.dumps(karpathy))
    boxes = {"1": [[0, 0, 10, 10], [5, 5, 60, 80]], "2": [[1.5, 2.5, 30, 40]]}
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    out = tmp_path / "gt"
    argv = [
        "features",
        "extract",
        str(tmp_path / "dataset_coco.json"),
        str(out),
        "--detector",
        "preset:tiny",
        "--boxes",
        str(tmp_path / "boxes.json"),
        "--no-progress",
    ]
    assert main(argv) == 0
    store = RegionFeatureStore(out)
    assert store.image_ids.tolist() == ["1", "2"]
    np.testing.assert_array_equal(store["1"]["boxes"], np.asarray(boxes["1"], dtype=np.float32))
    np.testing.assert_array_equal(store["2"]["boxes"], np.asarray(boxes["2"], dtype=np.float32))
    assert store.metadata["extractor"]["mode"] == "given boxes"
    (tmp_path / "boxes.json").write_text(json.dumps({"1": [[0, 0, 10, 10]]}))
    assert main([*argv[:3], str(tmp_path / "gt2"), *argv[4:]]) == 1  # image 2 has no boxes


def test_bad_image_is_named_or_skipped(tmp_path, image_dir, capsys):
    (image_dir / "broken_7.jpg").write_bytes(b"not a jpeg")
    argv = ["features", "extract", str(image_dir), str(tmp_path / "s"), "--detector", "preset:tiny", "--no-progress"]
    assert main(argv) == 1
    assert "image '7'" in capsys.readouterr().err
    assert main([*argv, "--skip-bad"]) == 0
    assert "skipped image '7'" in capsys.readouterr().out
    assert len(RegionFeatureStore(tmp_path / "s")) == 5


def test_compare_reports_agreement(tmp_path, image_dir, capsys):
    images = collect_images([image_dir])
    extract_to_store(RegionFeatureExtractor.from_preset("tiny"), images, tmp_path / "a", progress=False)
    extract_to_store(RegionFeatureExtractor.from_preset("tiny", seed=5), images, tmp_path / "b", progress=False)
    assert (
        main(["features", "compare", str(tmp_path / "a"), str(tmp_path / "a"), "--json", str(tmp_path / "c.json")]) == 0
    )
    same = json.loads((tmp_path / "c.json").read_text())
    assert same["images_compared"] == 5 and same["box_recall"] == 1.0 and same["box_precision"] == 1.0
    assert same["cosine_mean"] == pytest.approx(1.0, abs=1e-6) and same["mean_iou"] == pytest.approx(1.0)
    capsys.readouterr()
    assert (
        main(["features", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--json", str(tmp_path / "d.json")]) == 0
    )
    other = json.loads((tmp_path / "d.json").read_text())
    assert other["box_recall"] < 1.0 or other["cosine_mean"] < 0.999
    assert "cosine similarity of matched features" in capsys.readouterr().out


def test_match_boxes_is_one_to_one_by_iou():
    from hierarchical_vl.extraction.compare import match_boxes

    a = np.array([[0, 0, 10, 10], [0, 0, 10, 11], [50, 50, 60, 60]], dtype=np.float32)
    b = np.array([[0, 0, 10, 10], [100, 100, 110, 110]], dtype=np.float32)
    assert [(i, j) for i, j, _ in match_boxes(a, b, 0.5)] == [(0, 0)]


def test_convert_detector_command(tmp_path, images):
    from .test_extractor import _tiny_port_checkpoint

    port = _tiny_port_checkpoint(tmp_path / "port")
    assert main(["features", "convert-detector", str(port), str(tmp_path / "own")]) == 0
    a = RegionFeatureExtractor.from_pretrained(port)(images[0])[0]
    b = RegionFeatureExtractor.from_pretrained(tmp_path / "own")(images[0])[0]
    np.testing.assert_array_equal(a.features, b.features)
    assert main(["features", "convert-detector", str(tmp_path / "nothing"), str(tmp_path / "x")]) == 1
