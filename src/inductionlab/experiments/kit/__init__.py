"""What every experiment shares (docs/science.md §6, §7): the :class:`~.experiment.Experiment` it declares,
its claims (:mod:`.claims`), its trained runs and their curves (:mod:`.runs`, :mod:`.curves`), the seed
bands of its figures (:mod:`.figures`) and the one way it writes its results (:mod:`.finish`)."""
