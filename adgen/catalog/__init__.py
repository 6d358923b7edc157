"""Products and languages: product feeds (:mod:`~adgen.catalog.feeds`), their images fetched
safely and cut out (:mod:`~adgen.catalog.fetch`, :mod:`~adgen.catalog.images`), and locales with
their translations and formatting filters (:mod:`~adgen.catalog.locales`)."""
