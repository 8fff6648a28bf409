"""The prediction and publishing examples, run as scripts on tiny checkpoints (and on the demo corpus)."""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import ANSWERS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _run(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    process = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        cwd=ROOT,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return process


@pytest.fixture
def one_image_npz(store, tmp_path) -> Path:
    record = store["img1"]
    path = tmp_path / "img1.npz"
    np.savez(path, image_id="img1", **record)
    return path


def test_predict_retrieval_with_attention_picture(checkpoints, one_image_npz, tmp_path):
    out = tmp_path / "retrieval"
    captions = ["a black cat sits on a red mat", "two dogs play with a ball", "a man rides a horse"]
    process = _run(
        "predict.py",
        "retrieval",
        "--checkpoint",
        str(checkpoints["multitask"]),
        "--features",
        str(one_image_npz),
        "--captions",
        *captions,
        "--top-k",
        "2",
        "--visualize-dir",
        str(out),
        "--output",
        str(out / "result.json"),
    )
    report = json.loads(process.stdout)
    assert report == json.loads((out / "result.json").read_text())
    assert report["image_ids"] == ["img1"]
    ranked = report["results"]
    assert len(ranked) == 2 and all(item["caption"] in captions for item in ranked)
    assert ranked[0]["score"] >= ranked[1]["score"]
    picture = Image.open(report["pictures"][0])
    assert picture.width == 64 and picture.height > 48


def test_predict_grounding_pictures(checkpoints, one_image_npz, tmp_path):
    out = tmp_path / "grounding"
    process = _run(
        "predict.py",
        "grounding",
        "--checkpoint",
        str(checkpoints["grounding"]),
        "--features",
        str(one_image_npz),
        "--caption",
        "a black cat sits on a red mat",
        "--phrases",
        "a black cat",
        "a red mat",
        "--top-k",
        "2",
        "--visualize-dir",
        str(out),
    )
    report = json.loads(process.stdout)
    assert [entry["phrase"] for entry in report["results"]] == ["a black cat", "a red mat"]
    assert all(len(entry["boxes"]) == 2 for entry in report["results"])
    assert sorted(Path(p).name for p in report["pictures"]) == [
        "grounding_phrase0.png",
        "grounding_phrase1.png",
    ]


def test_predict_on_the_demo_corpus(checkpoints, tmp_path):
    data = pytest.importorskip("hierarchical_vl.data")
    if not all(hasattr(data, name) for name in ("generate_demo_corpus", "open_region_feature_reader")):
        pytest.skip("hierarchical_vl.data does not export the demo corpus and the feature readers yet")
    paths = data.generate_demo_corpus(
        tmp_path / "demo", num_images=10, seed=0, feature_dim=20, min_regions=4, max_regions=8
    )
    questions = json.loads(Path(paths.vqa_questions["train2014"]).read_text())["questions"]
    question = questions[0]
    image_id = str(question["image_id"])
    out = tmp_path / "vqa"
    process = _run(
        "predict.py",
        "vqa",
        "--checkpoint",
        str(checkpoints["vqa"]),
        "--features",
        str(paths.features_tsv),
        "--image-id",
        image_id,
        "--question",
        question["question"],
        "--top-k",
        "3",
        "--visualize-dir",
        str(out),
    )
    report = json.loads(process.stdout)
    assert len(report["results"]) == 3 and all(item["answer"] in ANSWERS for item in report["results"])
    ((asked, unknown),) = report["unknown_words"].items()  # the demo question's words the tiny vocabulary lacks
    assert asked == question["question"] and unknown and all(word in asked for word in unknown)
    picture = Image.open(report["pictures"][0])
    assert picture.width >= 480 and picture.height > 360  # demo images are 480-640 x 360-480 pixels


class _HubHandler(BaseHTTPRequestHandler):
    """The Hub endpoints a push uses; requests are recorded on the server."""

    def log_message(self, *args):  # keep test output clean
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return body

    def _reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.server.requests.append(("GET", self.path, b""))
        self._reply(404, {"error": "not found"})

    def do_POST(self):
        body = self._body()
        self.server.requests.append(("POST", self.path, body))
        path = self.path.split("?")[0]
        if path == "/api/repos/create":
            payload = json.loads(body)
            self._reply(200, {"url": f"{self.server.endpoint}/{payload['organization']}/{payload['name']}"})
        elif path == "/api/validate-yaml":
            self._reply(200, {"errors": [], "warnings": []})
        elif "/preupload/" in path:
            files = json.loads(body)["files"]
            self._reply(
                200,
                {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]},
            )
        elif "/commit/" in path:
            self._reply(
                200,
                {
                    "commitUrl": f"{self.server.endpoint}/someone/hvl-example/commit/" + "b" * 40,
                    "commitOid": "b" * 40,
                    "pullRequestUrl": None,
                },
            )
        else:
            self._reply(404, {"error": "not found"})


def test_push_to_hub_example_against_a_local_hub(checkpoints, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HubHandler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = server.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    (tmp_path / "card.json").write_text(json.dumps({"datasets": ["HuggingFaceM4/VQAv2"]}))
    (tmp_path / "results.json").write_text(json.dumps({"vqa": {"accuracy": 55.5}}))
    env = {
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_TOKEN": "hf_example_token",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    try:
        process = _run(
            "push_to_hub.py",
            "--checkpoint",
            str(checkpoints["vqa"]),
            "--repo-id",
            "someone/hvl-example",
            "--private",
            "--save-dir",
            str(tmp_path / "save"),
            "--card-data",
            str(tmp_path / "card.json"),
            "--results",
            str(tmp_path / "results.json"),
            "--endpoint",
            endpoint,
            env=env,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert "Pushed HierarchicalVLForVisualQuestionAnswering to someone/hvl-example" in process.stdout
    paths = [path for _, path, _ in server.requests]
    assert "/api/repos/create" in paths
    created = json.loads(next(body for _, path, body in server.requests if path == "/api/repos/create"))
    assert created["name"] == "hvl-example" and created["organization"] == "someone"
    assert created.get("private") is True or created.get("visibility") == "private"
    commit = next(body for _, path, body in server.requests if "/commit/" in path)
    lines = [json.loads(line) for line in commit.decode().splitlines()]
    files = {line["value"]["path"]: line["value"] for line in lines[1:]}
    assert {
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "processor_config.json",
        "README.md",
        "configuration_hierarchical_vl.py",
        "modeling_hierarchical_vl.py",
    } <= set(files)
    card = base64.b64decode(files["README.md"]["content"]).decode()
    assert "| Visual question answering |  |  | accuracy | 55.50 |" in card
    assert (tmp_path / "save" / "README.md").read_text() == card

    dry = _run(
        "push_to_hub.py",
        "--checkpoint",
        str(checkpoints["grounding"]),
        "--repo-id",
        "someone/hvl-g",
        "--save-dir",
        str(tmp_path / "dry"),
        "--dry-run",
    )
    assert "not uploaded" in dry.stdout and (tmp_path / "dry" / "README.md").is_file()


def test_bench_predict_quick_smoke_run():
    process = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_predict.py"),
            "--quick",
            "--json",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert process.returncode == 0, process.stderr[-3000:]
    figures = json.loads(process.stdout)
    assert figures["preset"] == "tiny" and figures["regions"] == 36 and figures["question_words"] == 10
    assert figures["single_latency_ms"] > 0 and figures["bare_forward_ms"] > 0
    assert figures["helper_overhead_ratio"] == pytest.approx(figures["single_latency_ms"] / figures["bare_forward_ms"])
    assert figures["throughput_per_s"] == pytest.approx(1000 * figures["batch_size"] / figures["batch_latency_ms"])


def test_bench_predict_smoke_writes_json_to_a_path(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_predict", ROOT / "benchmarks" / "bench_predict.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    output = tmp_path / "predict.json"
    figures = bench.main(["--smoke", "--json", str(output)])
    assert "single prediction (helper)" in capsys.readouterr().out  # the report is printed too
    assert json.loads(output.read_text()) == figures and figures["preset"] == "tiny" and figures["repeats"] == 3
