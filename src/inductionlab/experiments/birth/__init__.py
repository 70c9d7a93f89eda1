"""Experiment "birth" (docs/science.md §2, §3.1, §4.1, §6): an induction head being born, in two settings.

``run.py``: the plan (all targets, 2 vs 1 layers; top-down, zero vs random init; × seeds) and the
analysis (milestones, orders over seeds, claims); ``report.py``: its setting, figures and README.
"""

from inductionlab.experiments.birth.run import PRESETS, analyse, plan
from inductionlab.experiments.kit.experiment import Experiment

EXPERIMENT = Experiment(name="birth", title="Birth of an induction head", presets=PRESETS, plan=plan,
                        analyse=analyse, analysis_cost=1)
