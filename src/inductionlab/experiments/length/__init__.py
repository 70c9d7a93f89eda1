"""Experiment "length" (docs/science.md §3.1, §4.4 (iv), §6): positional encodings and length generalisation.

``run.py``: the plan (every encoding × seeds at T_train) and the analysis (evaluation at every test
length, targets beyond T_train split by where their induction key lies, family 2 with the §4.4 gap and
the bigram-only gap); ``claims.py``: its claims and the ``ape`` check; ``report.py``: its setting, figures
and README.
"""

from inductionlab.experiments.kit.experiment import Experiment
from inductionlab.experiments.length.run import PRESETS, analyse, plan

EXPERIMENT = Experiment(name="length", title="Length generalisation by positional encoding", presets=PRESETS,
                        plan=plan, analyse=analyse, analysis_cost=5)
