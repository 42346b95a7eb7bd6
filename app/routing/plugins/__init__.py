"""Tierserve's built-in routing plugins; `app/routing/registry.py` names them for config."""
