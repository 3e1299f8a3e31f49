"""The real-time recognition server: a Quart app on Hypercorn (`python -m server`)."""
