"""The demo app: VQA, retrieval and grounding in a web page (``hvl serve``), and a Space-ready folder for it
(``hvl space``).

[`DemoSession`] loads a checkpoint once for its tasks and draws every answer; it needs no Gradio. [`build_demo_app`]
lays it out with Gradio (``pip install 'hierarchical-vl[app]'``), imported only then. [`write_space`] writes the
folder of a Hugging Face Space that serves the app.
"""

from .demo_app import DEFAULT_TITLE, DemoApp, build_demo_app, import_gradio
from .demo_session import DemoSession, default_image_root
from .space import write_space

__all__ = [
    "DEFAULT_TITLE",
    "DemoApp",
    "DemoSession",
    "build_demo_app",
    "default_image_root",
    "import_gradio",
    "write_space",
]
