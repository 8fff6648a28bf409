"""Model presets as data (``<name>.json``), read by ``HierarchicalVLConfig.from_preset``."""

__all__: list[str] = []
