"""The demo app end to end in a real headless browser: Debian's Chromium driven by Playwright asks a question in
the VQA tab, waits for the answer, checks it is the predictor's top answer and saves a screenshot. The page must
work with the network closed: every request that leaves this machine is refused and recorded."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import pytest

from hierarchical_vl.app import DemoSession, build_demo_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_PREFIXES = ("http://127.0.0.1:", "data:", "blob:")
QUESTION = "what color is the cube ?"

for _module in ("gradio", "playwright"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"{_module} is not installed (pip install -e '.[dev]' installs it)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def served(demo_app_files, monkeypatch, tmp_path):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    session = DemoSession.from_pretrained(demo_app_files["checkpoint"], demo_app_files["features"], top_k=3)
    app = build_demo_app(session, title="Browser test")
    url = app.launch(host="127.0.0.1", port=_free_port(), block=False, quiet=True)
    assert url.startswith("http://127.0.0.1:")
    yield session, url
    app.close()


def test_asks_a_question_in_the_browser(served, tmp_path):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), f"no browser at {CHROMIUM}: `make test` installs Debian's chromium"
    session, url = served
    image_id = session.image_ids[0]
    expected = session.vqa.predict(QUESTION, image_id, top_k=3)[0]["answer"]
    outside: list[str] = []

    def local_only(route):
        if route.request.url.startswith(LOCAL_PREFIXES):
            route.continue_()
        else:  # the network is closed: nothing may be needed from elsewhere
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.route("**/*", local_only)
            page.goto(url, wait_until="load")
            page.locator("#image-id input").wait_for()
            assert page.locator("#image-id input").input_value() == image_id  # the first store image is picked
            page.locator("#vqa-question textarea").fill(QUESTION)
            page.locator("#vqa-submit").click()
            answer = page.locator("#vqa-answers [data-testid='label-output-value']")
            answer.wait_for(timeout=20_000)
            page.locator("#vqa-attention img").wait_for(timeout=20_000)
            assert answer.inner_text().strip() == expected
            shown = page.locator("#vqa-answers").inner_text()
            assert all(entry["answer"] in shown for entry in session.vqa.predict(QUESTION, image_id, top_k=3))
            screenshot = tmp_path / "vqa.png"
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    data = screenshot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    assert outside == []


def _elem_ids(app) -> set[str]:
    return {block.elem_id for block in app.blocks.blocks.values() if getattr(block, "elem_id", None)}


def test_the_page_offers_what_the_session_has(demo_app_files, photo_checkpoint):
    """A store gives the picker, the pictures' gallery and image ranking; an extractor gives the photo upload."""
    with_store = build_demo_app(DemoSession.from_pretrained(demo_app_files["checkpoint"], demo_app_files["features"]))
    ids = _elem_ids(with_store)
    assert {"image-id", "preview", "store-gallery", "vqa-question", "retrieval-rank-images", "grounding-submit"} <= ids
    assert "photo" not in ids
    photos_only = _elem_ids(build_demo_app(DemoSession.from_pretrained(photo_checkpoint)))
    assert "photo" in photos_only and "vqa-question" in photos_only
    assert not {"image-id", "preview", "store-gallery", "retrieval-rank-images"} & photos_only
