"""Experiment "nope3" (docs/science.md §3.2, §4.2, §6): a three-layer position-free model forms an induction head.

``run.py``: the plan (attention-only and with MLPs, × the preset's seeds) and the analysis (accuracy at every
test length beside the untrained model and the in-context unigram predictor, head scores on two
distributions); ``claims.py``: each variant's claims (learning, retention, heads); ``report.py``: its
setting, figures and README.
"""

from inductionlab.experiments.kit.experiment import Experiment
from inductionlab.experiments.nope3.run import PRESETS, analyse, plan

EXPERIMENT = Experiment(name="nope3", title="nope3: induction without positions", presets=PRESETS, plan=plan,
                        analyse=analyse, analysis_cost=4)
