"""Async work: operations and batches over Message Queue, the job store and the timer poller (see shared/__init__.py)."""
