"""Experiment "kv-shift" (docs/science.md §3.3, §6, §7): induction in one KV-shifting attention layer.

``run.py``: the plan (one KV-shift layer × seeds per task, and the vanilla arms birth and icl-mc train) and the
analysis; ``measure.py``: outcomes, milestones and scalar ratios; ``claims.py``: the claims and the check;
``report.py``: its setting, figures and README.
"""

from inductionlab.experiments.kit.experiment import Experiment
from inductionlab.experiments.kv_shift.run import PRESETS, analyse, plan

EXPERIMENT = Experiment(name="kv-shift", title="KV-shifting attention: induction in one layer", presets=PRESETS,
                        plan=plan, analyse=analyse, analysis_cost=1)
