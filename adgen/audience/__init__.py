"""The audience: customers read and validated (:mod:`~adgen.audience.read`), filtered by the
campaign's restricted expression language (:mod:`~adgen.audience.filters`) and grouped into
segments (:mod:`~adgen.audience.segments`)."""
