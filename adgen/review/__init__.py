"""Review and approval: people approve or reject each variant, and the rest of adgen obeys.

``decisions`` (the log and state of decisions, tied to each variant's content), ``sheet`` (the
HTML review sheet), ``thumbs`` (its thumbnails), ``source`` (what a review reads of an output),
``transfer`` (decisions as CSV) and ``app`` (``adgen review``: the sheet, served, with the
controls to decide). This ``__init__`` imports none of them.
"""
