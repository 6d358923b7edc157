"""Backends run renderers over render jobs: ``local`` (in-process) and ``ray`` (a GPU pool)."""
