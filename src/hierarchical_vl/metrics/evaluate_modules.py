"""What the package's ``evaluate`` modules (``metrics/modules/<name>/<name>.py``, loaded by [`load_metric`]) share.

``evaluate`` is imported only inside [`metric_module`], i.e. when a module is loaded, so importing
`hierarchical_vl.metrics` does not import it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["metric_module"]


def metric_module(
    description: str, inputs_description: str, citation: str, features: Any, **info: Any
) -> Callable[[type], type]:
    """Class decorator of the package's ``evaluate.Metric`` classes: their docstring and their ``_info``.

    The class docstring becomes ``description`` and ``inputs_description`` before the class's own (as with
    ``evaluate``'s ``add_start_docstrings``), and ``_info`` returns the ``evaluate.MetricInfo`` of the texts and
    ``features``. The class itself implements ``_compute``.

    Args:
        description: What the metric computes (``MetricInfo.description``).
        inputs_description: The arguments of ``compute`` and what it returns (``MetricInfo.inputs_description``).
        citation: The BibTeX entry of the metric's source (``MetricInfo.citation``).
        features: The input ``datasets.Features``, or a list of accepted alternatives.
        **info: Further ``MetricInfo`` fields, e.g. ``reference_urls``.

    Returns:
        The decorator.
    """
    import evaluate

    def _info(self: Any) -> Any:
        return evaluate.MetricInfo(
            description=description,
            citation=citation,
            inputs_description=inputs_description,
            features=features,
            **info,
        )

    def decorate(cls: type) -> type:
        cls._info = _info
        return evaluate.utils.file_utils.add_start_docstrings(description, inputs_description)(cls)

    return decorate
