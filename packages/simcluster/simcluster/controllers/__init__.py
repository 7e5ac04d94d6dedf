"""Simulated control plane: controllers that react to store changes.

Each controller maps store events to keys it cares about and reconciles one key at a
time on the server's event loop (so each reconcile is atomic against the store).
"""
