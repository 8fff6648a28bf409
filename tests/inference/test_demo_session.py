"""The demo app's computations (no Gradio needed): the predictors' own answers, pictures of the store's images,
drawings of every result, and clear refusals."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from hierarchical_vl.app import DemoSession, default_image_root
from hierarchical_vl.app.demo_session import split_lines
from hierarchical_vl.data import RegionFeatureStore
from hierarchical_vl.pipelines import GroundingPredictor, RetrievalPredictor, VQAPredictor


@pytest.fixture(scope="module")
def session(demo_app_files) -> DemoSession:
    return DemoSession.from_pretrained(demo_app_files["checkpoint"], demo_app_files["features"], top_k=3)


def test_finds_the_pictures_beside_the_features(demo_app_files, session, tmp_path):
    corpus = demo_app_files["corpus"]
    assert default_image_root(demo_app_files["features"]) == (corpus / "images").resolve()
    store = RegionFeatureStore(str(demo_app_files["features"]) + ".store")  # converted once, beside the TSV
    assert default_image_root(store.path) == (corpus / "images").resolve()
    assert default_image_root(tmp_path / "elsewhere.store") is None
    assert session.image_ids == list(store) and len(session.image_ids) == 12
    assert session.tasks == ["vqa", "retrieval", "grounding"] and not session.accepts_photos
    first = session.image_ids[0]
    assert session.picture_path(first) == (corpus / "images" / f"{first}.png").resolve()
    assert [name for _, name in session.gallery(5)] == session.image_ids[:5]
    assert session.preview(first).size == Image.open(corpus / "images" / f"{first}.png").size


@pytest.mark.parametrize("name", ["../images/1", "/etc/passwd", "..", ".", "", "a/b", "a\\b", "x\x00"])
def test_ids_that_are_not_plain_names_never_reach_a_file(session, name):
    assert session.picture_path(name) is None


def test_answers_are_the_vqa_predictors_with_the_attention_drawn(demo_app_files, session):
    image_id = session.image_ids[1]
    result = session.answer("what color is the cube ?", image_id)
    reference = VQAPredictor.from_pretrained(demo_app_files["checkpoint"], feature_store=session.feature_store).predict(
        "what color is the cube ?", image_id, top_k=3
    )
    assert [a["answer"] for a in result["answers"]] == [a["answer"] for a in reference]
    np.testing.assert_allclose([a["score"] for a in result["answers"]], [a["score"] for a in reference], rtol=1e-6)
    picture = Image.open(session.picture_path(image_id))
    assert result["picture"].width == picture.width and result["picture"].height > picture.height  # + word band
    # the drawing is the picture (under the boxes), not a blank canvas
    drawn = np.asarray(result["picture"])[: picture.height]
    assert (drawn == np.asarray(picture.convert("RGB"))).all(axis=2).mean() > 0.5


def test_retrieval_and_grounding_are_the_predictors(demo_app_files, session):
    image_id, captions = session.image_ids[2], ["a red cube on the left .", "a blue sphere .", "a gray cone ."]
    ranked = session.rank_captions(captions, image_id)
    reference = RetrievalPredictor.from_pretrained(demo_app_files["checkpoint"], feature_store=session.feature_store)
    assert ranked == reference.rank_captions(image_id, captions)
    images = session.rank_images("a red cube")
    expected = reference.rank_images("a red cube", session.image_ids, top_k=3)
    assert [e["image_id"] for e in images] == [e["image_id"] for e in expected]
    assert all(isinstance(e["picture"], Image.Image) for e in images)

    entries = session.ground("a red cube and a blue sphere", ["a red cube", "a blue sphere"], image_id)
    grounded = GroundingPredictor.from_pretrained(demo_app_files["checkpoint"], feature_store=session.feature_store)
    expected = grounded.predict("a red cube and a blue sphere", image_id, ["a red cube", "a blue sphere"], top_k=3)
    assert [{k: v for k, v in e.items() if k != "picture"} for e in entries] == expected
    assert all(isinstance(e["picture"], Image.Image) for e in entries)


def test_bad_input_is_refused_clearly(demo_app_files, session):
    with pytest.raises(ValueError, match="pick an image"):
        session.answer("what color is the cube ?", None)
    with pytest.raises(ValueError, match="'nope' is not in the feature store"):
        session.answer("what color is the cube ?", "nope")
    with pytest.raises(ValueError, match="empty"):
        session.answer("   ", session.image_ids[0])
    with pytest.raises(ValueError, match="--detector"):
        session.answer("what color is the cube ?", photo=Image.new("RGB", (32, 32)))
    with pytest.raises(ValueError, match="one per line"):
        session.rank_captions([], session.image_ids[0])
    with pytest.raises(ValueError, match="needs images"):
        DemoSession(session.model, session.vqa.processor)


def test_photos_with_the_detector_beside_the_checkpoint(demo_app_files, photo_checkpoint):
    """With a ``detector/`` beside the checkpoint (and no store), an uploaded photo is answered and drawn on."""
    session = DemoSession.from_pretrained(photo_checkpoint)
    assert session.accepts_photos and session.image_ids == []
    photo = Image.open(next((demo_app_files["corpus"] / "images").iterdir())).convert("RGB")
    result = session.answer("what color is the cube ?", photo=photo)
    expected = session.vqa.predict("what color is the cube ?", photo, top_k=5)
    assert [a["answer"] for a in result["answers"]] == [a["answer"] for a in expected]
    assert result["picture"].width == photo.width
    ranked = session.rank_captions(["a red cube .", "a blue sphere ."], photo=photo)
    assert sorted(entry["index"] for entry in ranked) == [0, 1]
    with pytest.raises(ValueError, match="needs a feature store"):
        session.rank_images("a red cube")


def test_split_lines():
    assert split_lines(" a red cube \n\n a blue sphere\na red cube ") == ["a red cube", "a blue sphere"]
    assert split_lines("a; b\nc", "\n;") == ["a", "b", "c"]
    assert split_lines(None) == []


def test_serve_says_what_is_missing(demo_app_files, monkeypatch, capsys):
    from hierarchical_vl.app import import_gradio
    from hierarchical_vl.cli import main as hvl

    monkeypatch.setitem(sys.modules, "gradio", None)  # as if Gradio were not installed
    with pytest.raises(ImportError, match=r"pip install 'hierarchical-vl\[app\]'"):
        import_gradio()
    assert hvl(["serve", str(demo_app_files["checkpoint"]), "--features", str(demo_app_files["features"])]) == 1
    assert "pip install 'hierarchical-vl[app]'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "gradio", type(sys)("gradio"))  # any module will do before the session
    assert hvl(["serve", str(demo_app_files["checkpoint"])]) == 1
    assert "needs images" in capsys.readouterr().err
