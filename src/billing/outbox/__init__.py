"""Transactional outbox: events written with their cause, delivered by the worker."""
