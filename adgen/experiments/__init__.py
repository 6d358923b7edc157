"""Experiments: which customer sees which variant and what came of it.

:mod:`~adgen.experiments.hashing` (GrowthBook-compatible buckets) and
:mod:`~adgen.experiments.stats` are pure functions; :mod:`~adgen.experiments.ledger` and
:mod:`~adgen.experiments.assignment` keep each customer's variant in the output folder;
:mod:`~adgen.experiments.analysis` reads results against it, :mod:`~adgen.experiments.refresh`
decides what a refresh retires and how it re-weights, :mod:`~adgen.experiments.explain` says
why a customer sees what they see."""
