"""Prefect flows: orchestration only; they call tasks and branch on results."""
