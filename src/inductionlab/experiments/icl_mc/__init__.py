"""Experiment "icl-mc" (docs/science.md §10, §7): statistical induction heads on in-context Markov chains.

``run.py``: the plan (two and one attention-only layers × seeds; order 3 at ``paper``) and the
analysis (final losses against the reference strategies, plateau shares, held-out head scores,
claims); ``report.py``: its setting, the stage plot, head scores and README.
"""

from inductionlab.experiments.icl_mc.run import PRESETS, analyse, plan
from inductionlab.experiments.kit.experiment import Experiment

EXPERIMENT = Experiment(name="icl-mc", title="Statistical induction heads: in-context Markov chains", presets=PRESETS,
                        plan=plan, analyse=analyse, analysis_cost=2)
