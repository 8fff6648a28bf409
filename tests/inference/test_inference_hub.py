"""Model card rendering and the whole Hub push, offline: huggingface_hub talks to a recording mock transport."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import huggingface_hub
import pytest
import torch
import yaml

from hierarchical_vl import (
    HierarchicalVLForMultiTask,
    HierarchicalVLForVisualGrounding,
    HierarchicalVLForVisualQuestionAnswering,
    HierarchicalVLModel,
    HierarchicalVLProcessor,
)
from hierarchical_vl.hub import REQUIRED_FILES, HubPushError, push_to_hub, render_model_card, save_for_hub

ENDPOINT = "https://hub.test"
REPO_ID = "someone/hvl-tiny"


def _http_module():
    """The HTTP library huggingface_hub uses (``httpx`` in 1.x, ``httpx2`` in 2.x)."""
    return sys.modules[type(huggingface_hub.get_session()).__module__.split(".")[0]]


class RecordingHub:
    """Answers the Hub endpoints a push uses, as the Hub does, and records every request."""

    def __init__(self, fail: dict[str, int] | None = None):
        self.requests: list[tuple[str, str, dict, bytes]] = []
        self.fail = fail or {}
        self.http = _http_module()

    def __call__(self, request):
        body = request.read()
        path = request.url.path
        self.requests.append((request.method, path, dict(request.headers), body))
        if request.url.host != "hub.test":
            return self.http.Response(404, json={"error": "not found"})
        for fragment, status in self.fail.items():
            if fragment in path:
                return self.http.Response(status, json={"error": "Internal Error - We're working hard to fix this"})
        if path == "/api/repos/create":
            payload = json.loads(body)
            return self.http.Response(200, json={"url": f"{ENDPOINT}/{payload['organization']}/{payload['name']}"})
        if path == "/api/validate-yaml":
            return self.http.Response(200, json={"errors": [], "warnings": []})
        if path.startswith(f"/api/models/{REPO_ID}/preupload/"):
            files = json.loads(body)["files"]
            modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            return self.http.Response(200, json={"files": modes})
        if path.startswith(f"/api/models/{REPO_ID}/commit/"):
            return self.http.Response(
                200,
                json={
                    "commitUrl": f"{ENDPOINT}/{REPO_ID}/commit/{'a' * 40}",
                    "commitOid": "a" * 40,
                    "pullRequestUrl": None,
                },
            )
        return self.http.Response(404, json={"error": "not found"})

    def calls(self, fragment: str) -> list[tuple[str, str, dict, bytes]]:
        return [call for call in self.requests if fragment in call[1]]

    def committed_files(self) -> dict[str, bytes]:
        ((_, _, headers, body),) = self.calls("/commit/")
        assert headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in body.decode().splitlines()]
        assert lines[0]["key"] == "header"
        files = {}
        for line in lines[1:]:
            assert line["key"] == "file" and line["value"]["encoding"] == "base64"
            files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
        return files


@pytest.fixture
def mock_hub():
    """Install a recording mock transport as huggingface_hub's HTTP client; restore the default afterwards."""
    http = _http_module()
    hubs: list[RecordingHub] = []

    def install(**kwargs) -> RecordingHub:
        hub = RecordingHub(**kwargs)
        huggingface_hub.set_client_factory(lambda: http.Client(transport=http.MockTransport(hub)))
        hubs.append(hub)
        return hub

    yield install
    default = getattr(huggingface_hub.utils._http, "default_client_factory", None)
    huggingface_hub.set_client_factory(default or (lambda: http.Client()))


@pytest.fixture
def multitask(tiny_config):
    torch.manual_seed(0)
    return HierarchicalVLForMultiTask(tiny_config).eval()


CARD = {
    "datasets": ["HuggingFaceM4/VQAv2"],
    "results": {"vqa": {"accuracy": 61.234}},
    "curriculum": [["vqa"], ["vqa", "retrieval"], ["vqa", "retrieval", "grounding"]],
    "training_hyperparameters": {"cycle_iterations": 100},
}


def test_push_records_repo_creation_and_one_commit_with_every_file(mock_hub, multitask, processor, tmp_path):
    hub = mock_hub()
    info = push_to_hub(
        multitask,
        processor,
        REPO_ID,
        save_directory=tmp_path / "save",
        card_data=CARD,
        private=True,
        token="hf_test_token",
        endpoint=ENDPOINT,
    )
    assert info.commit_url == f"{ENDPOINT}/{REPO_ID}/commit/{'a' * 40}"

    ((_, _, headers, body),) = hub.calls("/api/repos/create")
    created = json.loads(body)
    assert (created["organization"], created["name"]) == ("someone", "hvl-tiny")
    assert created.get("private") is True or created.get("visibility") == "private"
    assert headers["authorization"] == "Bearer hf_test_token"

    (preupload,) = hub.calls("/preupload/")
    announced = {entry["path"] for entry in json.loads(preupload[3])["files"]}
    files = hub.committed_files()
    assert set(files) == announced
    assert set(REQUIRED_FILES) <= set(files)
    assert {"tokenizer_config.json"} <= set(files)
    for name, content in files.items():
        assert (tmp_path / "save" / name).read_bytes() == content
    config = json.loads(files["config.json"])
    assert config["auto_map"]["AutoModel"] == "modeling_hierarchical_vl.HierarchicalVLForMultiTask"
    assert config["architectures"] == ["HierarchicalVLForMultiTask"]
    assert json.loads(files["processor_config.json"])["processor_class"] == "HierarchicalVLProcessor"
    card = files["README.md"].decode()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["library_name"] == "hierarchical-vl"
    assert metadata["datasets"] == ["HuggingFaceM4/VQAv2"]
    assert "| Visual question answering |  |  | accuracy | 61.23 |" in card
    paths = [call[1] for call in hub.requests if call[2].get("host") == "hub.test"]
    assert paths[0] == "/api/repos/create" and paths[-1] == f"/api/models/{REPO_ID}/commit/main"

    # The local save is a working checkpoint.
    reloaded = HierarchicalVLForMultiTask.from_pretrained(tmp_path / "save")
    for name, tensor in multitask.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[name], tensor)
    assert HierarchicalVLProcessor.from_pretrained(tmp_path / "save").tokenizer.get_vocab() == (
        processor.tokenizer.get_vocab()
    )


def test_failed_commit_keeps_the_complete_local_save(mock_hub, multitask, processor, tmp_path):
    mock_hub(fail={"/commit/": 500})
    save = tmp_path / "kept"
    with pytest.raises(HubPushError) as caught:
        push_to_hub(multitask, processor, REPO_ID, save_directory=save, token="hf_test_token", endpoint=ENDPOINT)
    message = str(caught.value)
    assert "push to the Hub repository 'someone/hvl-tiny' failed while uploading the files" in message
    assert "500" in message and str(save) in message
    assert caught.value.save_directory == save and caught.value.stage == "uploading the files"
    assert all((save / name).is_file() for name in REQUIRED_FILES)
    reloaded = HierarchicalVLForMultiTask.from_pretrained(save)
    torch.testing.assert_close(reloaded.state_dict(), multitask.state_dict())


def test_failed_repo_creation_keeps_the_temporary_save(mock_hub, multitask, processor):
    hub = mock_hub(fail={"/api/repos/create": 403})
    with pytest.raises(HubPushError, match="failed while creating the repository") as caught:
        push_to_hub(multitask, processor, REPO_ID, token="hf_test_token", endpoint=ENDPOINT)
    assert not hub.calls("/commit/")
    kept = caught.value.save_directory
    try:
        assert all((kept / name).is_file() for name in REQUIRED_FILES)
    finally:
        import shutil

        shutil.rmtree(kept)


def test_successful_push_removes_its_temporary_folder(mock_hub, multitask, processor, tmp_path, monkeypatch):
    import hierarchical_vl.hub as hub_module

    folder = tmp_path / "temporary"
    folder.mkdir()
    monkeypatch.setattr(hub_module.tempfile, "mkdtemp", lambda prefix: str(folder))
    mock_hub()
    push_to_hub(multitask, processor, REPO_ID, token="hf_test_token", endpoint=ENDPOINT)
    assert not folder.exists()


def test_resave_uploads_only_files_of_the_save(multitask, processor, tmp_path):
    (tmp_path / "notes.txt").write_text("private notes")
    written = save_for_hub(multitask, processor, tmp_path)
    assert "notes.txt" not in written and set(REQUIRED_FILES) <= set(written)
    assert save_for_hub(multitask, processor, tmp_path) == written


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_model_card_sections_and_metadata(tiny_config, multitask):
    card = render_model_card(multitask, CARD, repo_id=REPO_ID)
    metadata = _front_matter(card)
    assert metadata["library_name"] == "hierarchical-vl"
    assert metadata["pipeline_tag"] == "visual-question-answering"
    assert {"visual-question-answering", "image-text-retrieval", "visual-grounding"} <= set(metadata["tags"])
    assert set(metadata["metrics"]) == {"accuracy", "recall"}
    assert huggingface_hub.ModelCard(card).data.library_name == "hierarchical-vl"
    for section in (
        "## Model architecture",
        "## Task layers",
        "## Training data",
        "## Training procedure",
        "## Evaluation",
        "## Intended use",
        "## Limitations",
    ):
        assert section in card
    assert "L = 3, d = 16, 4 heads, 3 null tokens" in card
    assert "| Visual grounding | 1 |" in card and "| Image-caption retrieval | 2 |" in card
    assert "| Visual question answering | 3 |" in card
    assert "Algorithm 1" in card and "3. Visual question answering + Image-caption retrieval + Visual grounding" in card
    assert "| cycle_iterations | 100 |" in card
    assert f'model="{REPO_ID}"' in card and "${" not in card


def test_model_card_defaults_per_model_class(tiny_config):
    vqa = render_model_card(HierarchicalVLForVisualQuestionAnswering(tiny_config))
    assert _front_matter(vqa)["pipeline_tag"] == "visual-question-answering"
    assert _front_matter(vqa)["metrics"] == ["accuracy"]
    assert "This checkpoint has not been evaluated." in vqa
    assert "| Image-caption retrieval |" not in vqa and "7 answers" in vqa

    grounding = render_model_card(
        HierarchicalVLForVisualGrounding(tiny_config),
        {
            "results": [
                {
                    "task": "grounding",
                    "dataset": "Flickr30k Entities",
                    "split": "test",
                    "metric": "R@1",
                    "value": 70.5,
                }
            ]
        },
    )
    assert _front_matter(grounding)["pipeline_tag"] == "zero-shot-object-detection"
    assert "| Visual grounding | Flickr30k Entities | test | R@1 | 70.50 |" in grounding

    encoder = render_model_card(HierarchicalVLModel(tiny_config))
    assert "pipeline_tag" not in _front_matter(encoder)
    assert "without task decoders" in encoder

    with pytest.raises(ValueError, match="unknown model card field"):
        render_model_card(HierarchicalVLModel(tiny_config), {"licence": "mit"})


def test_rendered_example_card_in_the_repository_parses():
    example = Path(__file__).resolve().parents[2] / "model_cards" / "example_README.md"
    assert example.is_file()
    assert _front_matter(example.read_text())["library_name"] == "hierarchical-vl"


def test_push_commits_exactly_the_files_the_save_wrote(mock_hub, multitask, processor, tmp_path, monkeypatch):
    """Files another program writes into the folder while the save runs (secrets, logs, checkpoints) stay local."""
    import threading

    expected = save_for_hub(multitask, processor, tmp_path / "clean")
    assert set(REQUIRED_FILES) <= set(expected)
    save = tmp_path / "save"
    original = type(multitask).save_pretrained

    def intruder() -> None:
        (save / ".env").write_text("HF_TOKEN=hf_secret")
        (save / "train.log").write_text("step 1 loss 0.5")
        (save / "checkpoint-1").mkdir()
        (save / "checkpoint-1" / "optimizer.pt").write_bytes(b"state")
        (save / "notes.json").write_text("{}")

    def save_pretrained(self, directory, *args, **kwargs):
        result = original(self, directory, *args, **kwargs)
        thread = threading.Thread(target=intruder)  # another program writes into the folder during the save
        thread.start()
        thread.join()
        return result

    monkeypatch.setattr(type(multitask), "save_pretrained", save_pretrained)
    hub = mock_hub()
    push_to_hub(multitask, processor, REPO_ID, save_directory=save, token="hf_test_token", endpoint=ENDPOINT)
    assert sorted(hub.committed_files()) == expected
    assert (save / ".env").is_file() and (save / "checkpoint-1" / "optimizer.pt").is_file()
    assert not [path for path in save.iterdir() if path.name.startswith(".hvl-save-")]
