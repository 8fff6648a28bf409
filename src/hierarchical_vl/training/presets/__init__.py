"""Training presets as data (``<name>.yaml``), read by ``load_training_arguments``."""

__all__: list[str] = []
