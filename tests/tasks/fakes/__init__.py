"""Stateful HTTP fakes of services that cannot run here, speaking their wire format."""
