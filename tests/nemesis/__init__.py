"""The nemesis: faults on a real local cluster under a workload, and a checker of the history.

``python -m tests.nemesis --minutes 10 --seed 7`` (``make chaos``) runs the long
form; ``tests/test_nemesis.py`` runs a short one in the suite. See ``run.py`` for
the run, ``schedule.py`` for the faults, ``checker.py`` for what each check means.
"""
