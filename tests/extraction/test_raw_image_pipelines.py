"""Pipelines and predictors fed raw images (PIL image, path) through a configured region-feature extractor, and
a store written by ``hvl features extract`` read by a pipeline and by the training data path."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

from hierarchical_vl import (
    HierarchicalVLConfig,
    HierarchicalVLForMultiTask,
    HierarchicalVLProcessor,
    HierarchicalVLTokenizer,
)
from hierarchical_vl.data.feature_store import RegionFeatureStore
from hierarchical_vl.extraction.image_sources import collect_images
from hierarchical_vl.extraction.store_extraction import extract_to_store
from hierarchical_vl.pipelines import GroundingPredictor, RetrievalPredictor, VQAPredictor

TEXTS = ["what color is the cat ?", "a black cat sits on a red mat", "two dogs play with a ball"]
ANSWERS = ["yes", "no", "red", "black", "two"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_extractor):
    """A tiny multi-task checkpoint whose region width is the tiny detector's, with the detector saved beside."""
    tokenizer = HierarchicalVLTokenizer.from_texts(TEXTS)
    processor = HierarchicalVLProcessor(tokenizer, max_regions=16, max_words=14)
    config = HierarchicalVLConfig.from_preset(
        "tiny",
        vocab_size=len(tokenizer),
        id2label=dict(enumerate(ANSWERS)),
        region_feature_dim=tiny_extractor.config.feature_dim,
    )
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("raw") / "model"
    HierarchicalVLForMultiTask(config).eval().save_pretrained(root)
    processor.save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def photo(tmp_path_factory, images):
    path = tmp_path_factory.mktemp("photos") / "cat.png"
    Image.fromarray(images[0]).save(path)
    return path


def test_vqa_pipeline_answers_about_a_photo(checkpoint, photo, tiny_extractor):
    vqa = pipeline("hierarchical-vl-vqa", model=str(checkpoint), feature_extractor=tiny_extractor)
    from_path = vqa({"question": "what color is the cat ?", "image": str(photo)}, top_k=2)
    from_pil = vqa({"question": "what color is the cat ?", "image": Image.open(photo)}, top_k=2)
    regions = tiny_extractor(str(photo))[0]
    from_features = vqa({"question": "what color is the cat ?", "region_features": regions.features}, top_k=2)
    assert [a["answer"] for a in from_path] == [a["answer"] for a in from_features]
    assert from_path[0]["score"] == pytest.approx(from_features[0]["score"], abs=1e-5)
    assert from_pil[0]["score"] == pytest.approx(from_path[0]["score"], abs=1e-5)
    folder = tiny_extractor.save_pretrained(photo.parent / "detector_folder")
    by_folder = pipeline("hierarchical-vl-vqa", model=str(checkpoint), feature_extractor=str(folder))
    answer = by_folder({"question": "what color is the cat ?", "image": str(photo)}, top_k=2)
    assert answer[0]["score"] == pytest.approx(from_path[0]["score"], abs=1e-5)


def test_detector_saved_beside_the_checkpoint_is_used(checkpoint, photo, tiny_extractor, tmp_path):
    tiny_extractor.save_pretrained(checkpoint / "detector")
    try:
        predictor = VQAPredictor.from_pretrained(checkpoint)
        assert predictor.pipeline.region_feature_extractor is not None
        result = predictor.predict("what color is the cat ?", str(photo), top_k=1, return_attention=True)
        attention = result["attention"]
        assert len(attention["boxes"]) == len(attention["region_weights"]) == tiny_extractor(str(photo))[0].num_boxes
        from hierarchical_vl.visualization import render_attention

        picture = render_attention(attention, image=str(photo))  # drawn on the photo itself
        assert picture.width == Image.open(photo).width
        ranked = RetrievalPredictor.from_pretrained(checkpoint).rank_captions(str(photo), TEXTS[1:])
        assert sorted(r["index"] for r in ranked) == [0, 1]
        grounded = GroundingPredictor.from_pretrained(checkpoint).predict(TEXTS[1], str(photo), ["a red mat"])
        assert len(grounded[0]["boxes"][0]["box"]) == 4
    finally:
        import shutil

        shutil.rmtree(checkpoint / "detector")


def test_a_photo_without_an_extractor_is_a_clear_error(checkpoint, photo):
    vqa = pipeline("hierarchical-vl-vqa", model=str(checkpoint))
    with pytest.raises((ValueError, TypeError), match="extractor|cannot read"):
        vqa({"question": "what color is the cat ?", "image": Image.open(photo)})


def test_an_extracted_store_feeds_the_pipeline_and_the_training_data(checkpoint, tmp_path, images, tiny_extractor):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, image in enumerate(images[:3]):
        Image.fromarray(image).save(folder / f"{i + 1}.png")
    extract_to_store(tiny_extractor, collect_images([folder]), tmp_path / "store", progress=False)
    store = RegionFeatureStore(tmp_path / "store")
    vqa = pipeline("hierarchical-vl-vqa", model=str(checkpoint), feature_store=store)
    assert len(vqa({"question": "what color is the cat ?", "image_id": "2"}, top_k=1)) == 1
    rows, mask = store.region_rows(np.array([0, 2]))
    batch = store.read_rows(rows)  # what the training collators gather
    assert batch.shape[0] == 2 and batch.shape[2] == tiny_extractor.config.feature_dim
    assert mask.sum() == store.num_regions[[0, 2]].sum()


def test_photo_example_runs_offline(tmp_path, capsys):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "from_photo.py"
    spec = importlib.util.spec_from_file_location("from_photo", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--demo", "--output-dir", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["answers"]) == 3 and len(result["ranked_captions"]) == 2
    assert result["grounded"][0]["boxes"][0]["box"] is not None
    assert (tmp_path / "vqa_attention.png").is_file() and (tmp_path / "grounding.png").is_file()
