"""The embedded default: a sample app, its GitOps repo and catalog, seeded into the
local stack so the quick start runs a real delivery end to end."""
