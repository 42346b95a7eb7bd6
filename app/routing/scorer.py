"""The learned scorer's interface: P(request needs the strong tier), from the request alone."""

from __future__ import annotations

from typing import Protocol

from app.routing.features import RequestFeatures


class ComplexityScorer(Protocol):
    def score(self, features: RequestFeatures) -> float:
        """Probability in [0, 1] that the weak tier would get this wrong and the strong one right."""
        ...
