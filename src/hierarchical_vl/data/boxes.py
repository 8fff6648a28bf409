"""Box geometry of the data modules: the package's one `box_iou`, which lives with the grounding metric.

`hierarchical_vl.metrics.grounding` owns the definition (the metrics stay numpy-only); this module only re-exports
it for the data modules that still import it from here.
"""

from __future__ import annotations

from ..metrics.grounding import box_iou

__all__ = ["box_iou"]
