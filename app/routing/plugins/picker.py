"""The ladder picker: the combined score climbs the cost ladder, one threshold per boundary."""

from __future__ import annotations

from bisect import bisect_right

from app.routing.plugin import Context, PickerPlugin, Setup


class LadderPicker(PickerPlugin):
    """Score s goes to ladder[i], i = how many thresholds are <= s (two tiers: s >= threshold
    goes to the strong tier)."""

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self._ladder = tuple(setup.config.routing.ladder)
        self.thresholds = tuple(setup.config.routing.thresholds)

    def pick(self, ctx: Context, score: float) -> str:
        return self._ladder[bisect_right(self.thresholds, score)]
