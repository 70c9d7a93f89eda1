"""Experiment "hijack" (docs/science.md §5, §6, §7): designed prompts on trained models against §4.4/§4.5.

``run.py``: the plan (random triggers × rpe, ape; fixed triggers; × seeds) and the analysis;
``eval.py``: one model on every prompt; ``ceiling.py``: the same prompts with the filler re-drawn
(the noise ceiling); ``analysis.py`` and ``stats.py``: held-out fits, nulls, agreement, crossovers
and slopes across seeds; ``report.py``: claims, checks, setting and README; ``figures.py``: its
figures. The prompts come from :mod:`inductionlab.prompts`.
"""

from inductionlab.experiments.hijack.run import PRESETS, analyse, plan
from inductionlab.experiments.kit.experiment import Experiment

EXPERIMENT = Experiment(name="hijack", title="Knowledge hijack: context against stored bigrams", presets=PRESETS,
                        plan=plan, analyse=analyse, analysis_cost=6)
