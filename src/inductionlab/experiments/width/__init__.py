"""Experiment "width" (docs/science.md §11): does the closed form describe trained models as d grows?

``run.py``: the plan (the ``hijack`` random-trigger ``rpe`` model at several widths × seeds, the shared width
riding along ``hijack``'s runs) and the analysis; ``measure.py``: what is measured on one model, trained or its
ideal twin; ``report.py``: summary, claims, checks, figures and README.
"""

from inductionlab.experiments.kit.experiment import Experiment
from inductionlab.experiments.width.run import PRESETS, analyse, plan

EXPERIMENT = Experiment(name="width", title="Width: the closed form as d grows", presets=PRESETS, plan=plan,
                        analyse=analyse, analysis_cost=4)
