"""The output: a campaign's folder or URL, and everything adgen keeps there.

Layout under a campaign's output::

    assets/<variant_id>/<placement>-<hash8>.<ext>   one file per placement (ids and hashes only)
    manifest.parquet, manifest.csv                  one row per asset (:mod:`adgen.manifest`)
    assignments.csv                                 customer -> variant, for the CRM
    run.json                                        summary of the last run
    .cache/renders/<k2>/<job_key>.png (+ .json)     rendered pictures by job key

:mod:`~adgen.output.store` reads and writes it, a local folder or an object store behind one
interface; :mod:`~adgen.output.files` writes local files atomically and keeps the record of what
adgen wrote; :mod:`~adgen.output.cache` is the render cache; :mod:`~adgen.output.mirror` gives
code that works on files a local folder for a URL output; :mod:`~adgen.output.lock` and
:mod:`~adgen.output.lease` keep one command at a time on an output.
"""
