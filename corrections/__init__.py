"""Corrections: the right readings people give for drawings the model read wrong.

`store.py` keeps them in SQLite or PostgreSQL through one small async API; `schema.py` is
their table; `migrations/` holds the Alembic revisions that create and change it. The server
writes corrections, `train.finetune` reads them; neither knows which database is behind.
"""
