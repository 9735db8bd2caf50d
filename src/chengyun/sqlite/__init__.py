"""Chengyun's SQLite database backend: Django's, with a faster hand-over of
the write lock (see :mod:`chengyun.sqlite.base`)."""
