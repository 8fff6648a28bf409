"""``hvl space``: a Space folder with app.py, requirements.txt and a README whose YAML configures the Space."""

from __future__ import annotations

import importlib.util
import shutil
import sys

import pytest
import yaml

from hierarchical_vl import __version__
from hierarchical_vl.app.space import SPACE_FILES, write_space
from hierarchical_vl.cli import main as hvl


def _front_matter(readme: str) -> dict:
    assert readme.startswith("---\n")
    return yaml.safe_load(readme.split("---\n")[1])


def test_a_hub_model_is_linked_and_the_store_and_pictures_copied(demo_app_files, tmp_path):
    folder = write_space(
        tmp_path / "space", "someone/hierarchical-vl-demo", features=demo_app_files["features"], sdk_version="6.1.0"
    )
    assert set(SPACE_FILES) <= {p.name for p in folder.iterdir()}
    metadata = _front_matter((folder / "README.md").read_text())
    assert metadata["sdk"] == "gradio" and metadata["sdk_version"] == "6.1.0"
    assert metadata["app_file"] == "app.py" and metadata["models"] == ["someone/hierarchical-vl-demo"]
    readme = (folder / "README.md").read_text()
    assert "(https://huggingface.co/someone/hierarchical-vl-demo)" in readme
    assert (folder / "requirements.txt").read_text() == f"hierarchical-vl[app]=={__version__}\n"
    app = (folder / "app.py").read_text()
    compile(app, "app.py", "exec")
    assert "'someone/hierarchical-vl-demo'" in app and "os.path.join(HERE, 'features')" in app
    assert "os.path.join(HERE, 'images')" in app and "detector=None" in app
    assert (folder / "features" / "store.json").is_file()
    pictures = sorted(p.name for p in (demo_app_files["corpus"] / "images").iterdir())
    assert sorted(p.name for p in (folder / "images").iterdir()) == pictures
    assert not (folder / "model").exists()


def test_a_local_checkpoint_is_copied_and_the_app_builds(demo_app_files, tmp_path, monkeypatch):
    checkpoint = shutil.copytree(demo_app_files["checkpoint"], tmp_path / "checkpoint")
    (checkpoint / "checkpoints").mkdir()  # training states stay out
    folder = write_space(
        tmp_path / "space",
        checkpoint,
        features=demo_app_files["features"],
        title="A: demo",
        requirements=["hierarchical-vl[app] @ git+https://example.org/hvl.git", "torch"],
    )
    metadata = _front_matter((folder / "README.md").read_text())
    assert metadata["title"] == "A: demo" and "models" not in metadata
    assert (folder / "requirements.txt").read_text().splitlines()[1] == "torch"
    assert (folder / "model" / "config.json").is_file() and not (folder / "model" / "checkpoints").exists()
    assert "os.path.join(HERE, 'model')" in (folder / "app.py").read_text()
    if importlib.util.find_spec("gradio") is None:
        return  # building the app needs the app extra
    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location("space_app", folder / "app.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "space_app", module)
    spec.loader.exec_module(module)  # builds, does not launch
    assert type(module.demo).__name__ == "Blocks" and module.session.tasks == ["vqa", "retrieval", "grounding"]
    assert module.session.image_root == folder / "images"


def test_refusals(demo_app_files, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_space(tmp_path / "taken", "someone/model", features=demo_app_files["features"])
    with pytest.raises(ValueError, match="needs images"):
        write_space(tmp_path / "none", "someone/model")
    with pytest.raises(ValueError, match="neither a local folder nor a Hub repository id"):
        write_space(tmp_path / "bad", "not a/valid//id", features=demo_app_files["features"])
    assert not (tmp_path / "none").exists() and not (tmp_path / "bad").exists()
    assert hvl(["space", str(tmp_path / "taken"), "--model", "someone/model", "--features", "x"]) == 1
    assert "exists" in capsys.readouterr().err
    written = tmp_path / "taken"
    code = hvl(
        [
            "space",
            str(written),
            "--model",
            "someone/model",
            "--features",
            str(demo_app_files["features"]),
            "--overwrite",
        ]
    )
    assert code == 0 and (written / "app.py").is_file()
