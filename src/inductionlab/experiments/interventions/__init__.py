"""Experiment "interventions" (docs/science.md §6, §7, §8): which part has to go right, and when, for an
induction head to form.

``run.py``: the plan (six arms × seeds in Bietti's setting (b)) and the analysis (interpolated
milestones, censored medians, four causal claims); ``report.py``: its setting, figures and README.
"""

from inductionlab.experiments.interventions.run import PRESETS, analyse, plan
from inductionlab.experiments.kit.experiment import Experiment

EXPERIMENT = Experiment(name="interventions", title="Interventions during training: what has to go right, and when",
                        presets=PRESETS, plan=plan, analyse=analyse, analysis_cost=3)
