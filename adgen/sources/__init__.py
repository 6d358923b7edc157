"""Where data comes from and goes, outside the output folder: SQL databases
(:mod:`~adgen.sources.sql`: queries read in Arrow batches, a table upserted in one transaction)
and the ad platforms' performance reports (:mod:`~adgen.sources.reports`: Meta Ads Manager and
Google Ads exports, their column names kept as data). Each is read into a plain frame here, at
the boundary; the audience and the experiment analysis cannot tell one source from another."""
