"""Experiments: which customer sees which variant and what came of it.

:mod:`~adgen.experiments.hashing` (GrowthBook-compatible buckets) and
:mod:`~adgen.experiments.stats` are pure functions; :mod:`~adgen.experiments.ledger` and
:mod:`~adgen.experiments.assignment` keep each customer's variant in the output folder, and
:mod:`~adgen.experiments.table` mirrors it into a database table; :mod:`~adgen.experiments.analysis`
reads results against it (a platform's report through :mod:`~adgen.experiments.platforms`),
:mod:`~adgen.experiments.refresh` decides what a refresh retires and how it re-weights,
:mod:`~adgen.experiments.explain` says why a customer sees what they see."""
