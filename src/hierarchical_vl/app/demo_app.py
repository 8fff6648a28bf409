"""The Gradio demo app: VQA, retrieval and grounding tabs over a [`DemoSession`].

An image is picked from the feature store (a drop-down of its ids, and a gallery of its pictures when they exist),
or, when a region-feature extractor is configured, uploaded as a photo. The VQA tab answers a question with the
top answers and their scores and draws the decoder's attention on the picture; the retrieval tab ranks captions
for the image and the store's images for a caption; the grounding tab draws the best boxes of each phrase of a
caption. Tabs appear for the tasks the checkpoint has.

Gradio is an optional dependency (``pip install 'hierarchical-vl[app]'``), imported only when an app is built.
The app works offline: analytics are off, nothing is shared, and the theme uses the system's fonts instead of
fetching web fonts.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

from .demo_session import DemoSession, split_lines

__all__ = ["DEFAULT_TITLE", "DemoApp", "build_demo_app", "import_gradio"]

DEFAULT_TITLE = "Hierarchical vision-language demo"
"""Title of the app's page."""

_MAX_CHOICES = 2000  # ids listed in the drop-down; others can still be typed
_GALLERY_SIZE = 48
_SYSTEM_FONTS = ("ui-sans-serif", "system-ui", "Segoe UI", "Helvetica", "Arial", "sans-serif")
_SYSTEM_MONO_FONTS = ("ui-monospace", "SFMono-Regular", "Consolas", "monospace")
_USER_ERRORS = (ValueError, KeyError, TypeError, FileNotFoundError)


def import_gradio() -> Any:
    """Imports Gradio with its analytics off.

    Raises:
        ImportError: If Gradio is not installed, saying how to install it.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        return importlib.import_module("gradio")
    except ImportError as error:
        raise ImportError(
            "the demo app needs Gradio, an optional dependency: pip install 'hierarchical-vl[app]'"
        ) from error


def _reported(gr: Any, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` with the errors of bad input shown in the page instead of a trace."""

    def wrapped(*args: Any) -> Any:
        try:
            return function(*args)
        except _USER_ERRORS as error:
            raise gr.Error(str(error).strip("'\"")) from error

    wrapped.__name__ = function.__name__
    return wrapped


class DemoApp:
    """The Gradio ``Blocks`` of a [`DemoSession`], and how to serve it.

    Args:
        session: What the app computes.
        title: The page's title.

    Attributes:
        session: The session.
        blocks: The ``gradio.Blocks``.
    """

    def __init__(self, session: DemoSession, title: str = DEFAULT_TITLE):
        self.session = session
        self.title = title
        self._gradio = import_gradio()
        self.blocks = self._build()

    # ----------------------------------------------------------------------------------------------------------
    # Layout
    # ----------------------------------------------------------------------------------------------------------

    def _build(self) -> Any:
        gr, session = self._gradio, self.session
        first = session.image_ids[0] if session.image_ids else None
        with gr.Blocks(title=self.title, analytics_enabled=False) as blocks:
            gr.Markdown(f"# {self.title}\n{self._introduction()}")
            image_id, photo = gr.State(None), gr.State(None)  # replaced by the inputs the session offers
            with gr.Row():
                with gr.Column(scale=1):
                    if session.image_ids:
                        image_id = gr.Dropdown(
                            choices=session.image_ids[:_MAX_CHOICES],
                            value=first,
                            label="Image from the feature store",
                            allow_custom_value=True,
                            elem_id="image-id",
                        )
                    if session.accepts_photos:
                        label = "Or upload a photo (used when given)" if session.image_ids else "Upload a photo"
                        photo = gr.Image(type="pil", sources=["upload"], label=label, elem_id="photo")
                if session.image_ids:
                    with gr.Column(scale=2):
                        preview = gr.Image(
                            value=session.preview(first), label="Picture", interactive=False, elem_id="preview"
                        )
                    image_id.change(_reported(gr, session.preview), image_id, preview)
            pictures = session.gallery(_GALLERY_SIZE)
            if pictures:
                gallery = gr.Gallery(
                    value=[(str(path), name) for path, name in pictures],
                    label="Pictures of the store (click one to pick it)",
                    columns=8,
                    height=220,
                    allow_preview=False,
                    elem_id="store-gallery",
                )
                names = [name for _, name in pictures]

                def pick(event: Any) -> str:
                    return names[event.index]

                pick.__annotations__["event"] = gr.SelectData  # how Gradio knows to pass the selection
                gallery.select(pick, None, image_id)
            with gr.Tabs():
                if session.vqa is not None:
                    self._vqa_tab(image_id, photo)
                if session.retrieval is not None:
                    self._retrieval_tab(image_id, photo)
                if session.grounding is not None:
                    self._grounding_tab(image_id, photo)
        return blocks

    def _introduction(self) -> str:
        session = self.session
        source = f"{len(session.image_ids)} images in the feature store" if session.image_ids else "no feature store"
        photos = "; photos can be uploaded (regions extracted on the fly)" if session.accepts_photos else ""
        return f"Tasks: {', '.join(session.tasks)}. Images: {source}{photos}."

    def _vqa_tab(self, image_id: Any, photo: Any) -> None:
        gr, session = self._gradio, self.session
        with gr.Tab("VQA", id="vqa"):
            with gr.Row():
                question = gr.Textbox(
                    label="Question", placeholder="what color is the cube?", scale=4, elem_id="vqa-question"
                )
                ask = gr.Button("Answer", variant="primary", scale=1, elem_id="vqa-submit")
            with gr.Row():
                answers = gr.Label(num_top_classes=session.top_k, label="Answers", elem_id="vqa-answers")
                attention = gr.Image(label="Attention of the VQA decoder", interactive=False, elem_id="vqa-attention")

            def run(text: str, picked: Any, uploaded: Any) -> tuple[dict[str, float], Any]:
                result = session.answer(text, picked, uploaded)
                return {entry["answer"]: entry["score"] for entry in result["answers"]}, result["picture"]

            for trigger in (ask.click, question.submit):
                trigger(_reported(gr, run), [question, image_id, photo], [answers, attention])

    def _retrieval_tab(self, image_id: Any, photo: Any) -> None:
        gr, session = self._gradio, self.session
        with gr.Tab("Retrieval", id="retrieval"):
            with gr.Row():
                with gr.Column():
                    captions = gr.Textbox(
                        label="Captions to rank for the image (one per line)", lines=5, elem_id="retrieval-captions"
                    )
                    rank_captions = gr.Button("Rank the captions", variant="primary", elem_id="retrieval-rank-captions")
                    ranked_captions = gr.Label(label="Captions, best first", elem_id="retrieval-ranked-captions")
                if session.image_ids:  # images are ranked among the store's
                    with gr.Column():
                        query = gr.Textbox(label="Caption to find images for", elem_id="retrieval-caption")
                        rank_images = gr.Button(
                            "Rank the store's images", variant="primary", elem_id="retrieval-rank-images"
                        )
                        ranked_images = gr.Gallery(
                            label="Images, best first",
                            columns=3,
                            allow_preview=False,
                            elem_id="retrieval-ranked-images",
                        )

            def by_image(text: str, picked: Any, uploaded: Any) -> Any:
                lines = split_lines(text)
                ranked = session.rank_captions(lines, picked, uploaded)
                return gr.Label(
                    value={entry["caption"]: entry["score"] for entry in ranked}, num_top_classes=len(lines)
                )

            def by_caption(text: str) -> list[tuple[Any, str]]:
                return [
                    (entry["picture"], f"{entry['image_id']}: {entry['score']:.3f}")
                    for entry in session.rank_images(text)
                    if entry["picture"] is not None
                ]

            rank_captions.click(_reported(gr, by_image), [captions, image_id, photo], ranked_captions)
            if session.image_ids:
                for trigger in (rank_images.click, query.submit):
                    trigger(_reported(gr, by_caption), query, ranked_images)

    def _grounding_tab(self, image_id: Any, photo: Any) -> None:
        gr, session = self._gradio, self.session
        with gr.Tab("Grounding", id="grounding"):
            with gr.Row():
                with gr.Column():
                    caption = gr.Textbox(label="Caption", elem_id="grounding-caption")
                    phrases = gr.Textbox(
                        label="Phrases of the caption to ground (one per line)", lines=3, elem_id="grounding-phrases"
                    )
                    ground = gr.Button("Ground the phrases", variant="primary", elem_id="grounding-submit")
                    boxes = gr.JSON(label="Boxes and scores", elem_id="grounding-boxes")
                with gr.Column():
                    drawings = gr.Gallery(
                        label="Best boxes per phrase", columns=2, object_fit="contain", elem_id="grounding-pictures"
                    )

            def run(text: str, lines: str, picked: Any, uploaded: Any) -> tuple[Any, list[dict[str, Any]]]:
                entries = session.ground(text, split_lines(lines), picked, uploaded)
                pictures = [(entry["picture"], entry["phrase"]) for entry in entries if entry["picture"] is not None]
                table = [{key: value for key, value in entry.items() if key != "picture"} for entry in entries]
                return pictures, table

            ground.click(_reported(gr, run), [caption, phrases, image_id, photo], [drawings, boxes])

    # ----------------------------------------------------------------------------------------------------------
    # Serving
    # ----------------------------------------------------------------------------------------------------------

    def _theme(self) -> Any:
        themes = self._gradio.themes
        return themes.Default(font=list(_SYSTEM_FONTS), font_mono=list(_SYSTEM_MONO_FONTS))

    def launch(
        self, host: str | None = None, port: int | None = None, *, block: bool = True, quiet: bool = False
    ) -> str:
        """Serves the app (never through a share link).

        Args:
            host: Address to listen on (Gradio's default, ``127.0.0.1`` or ``GRADIO_SERVER_NAME``, when ``None``).
            port: Port (Gradio's default, 7860 or ``GRADIO_SERVER_PORT``, when ``None``).
            block: Wait until the server stops; ``False`` returns once it is up (stop it with [`close`]).
            quiet: Print nothing.

        Returns:
            The local address of the app.
        """
        allowed = [str(self.session.image_root)] if self.session.image_root is not None else []
        self.blocks.launch(
            server_name=host,
            server_port=port,
            share=False,
            prevent_thread_lock=not block,
            allowed_paths=allowed,
            theme=self._theme(),
            show_error=True,
            ssr_mode=False,
            quiet=quiet,
        )
        return self.blocks.local_url

    def close(self) -> None:
        """Stops the server started by [`launch`]."""
        self.blocks.close()


def build_demo_app(session: DemoSession, title: str = DEFAULT_TITLE) -> DemoApp:
    """The demo app of a session; see [`DemoApp`].

    Raises:
        ImportError: If Gradio is not installed.
    """
    return DemoApp(session, title=title)
