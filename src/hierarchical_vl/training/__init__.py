"""Training: the Algorithm 1 schedule, the Accelerate trainer, checkpoints, arguments and the ``hvl train`` commands.

Only the command line imports this package (``hvl train``, ``hvl search``, ``hvl search-layers``, ``hvl demo``);
the library never does. Import what you need from its modules,
e.g. ``hierarchical_vl.training.run.train_from_arguments``.
"""

__all__: list[str] = []
