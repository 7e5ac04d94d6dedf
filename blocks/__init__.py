"""Prefect Block types holding connection settings and credentials for Shipyard's steps."""
