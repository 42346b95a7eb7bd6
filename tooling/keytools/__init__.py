"""Operator tooling for virtual keys and spend: `tierserve keys ...`, `tierserve usage`."""
