"""Silencing every progress bar of a command: the package's own and those of transformers, huggingface_hub and
datasets (their "Loading weights", "Writing model shards" and download bars), as ``--no-progress``
(``progress=false``) promises."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["progress_bars_disabled"]


@contextlib.contextmanager
def progress_bars_disabled(disabled: bool = True) -> Iterator[None]:
    """Turns off the progress bars of transformers, huggingface_hub and datasets inside the block.

    The package's own bars follow their ``progress`` flags. Each library's setting is restored on leaving.

    Args:
        disabled: ``False`` leaves the bars as they are (for ``with progress_bars_disabled(not progress):``).
    """
    if not disabled:
        yield
        return
    import huggingface_hub.utils
    from transformers.utils import logging as transformers_logging

    transformers_enabled = transformers_logging.is_progress_bar_enabled()
    hub_disabled = huggingface_hub.utils.are_progress_bars_disabled()
    import datasets  # its builders (the corpora's JSON splits) draw "Generating ... split" bars

    datasets_enabled = datasets.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if transformers_enabled:
            transformers_logging.enable_progress_bar()
        if not hub_disabled:
            huggingface_hub.utils.enable_progress_bars()
        if datasets_enabled:
            datasets.enable_progress_bars()
