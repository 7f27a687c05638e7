"""One pool's rollout state: the current stable/canary split and the revisions rolled back.

The operator sets weights through the admin API; a breach of a rollback rule sets the canary's
weight to 0 at once and records a Verdict (shoal/route_contract.py; the operator reads it back). A
rolled-back revision stays out (no flapping): the weights cannot send it traffic again until someone
resets it.
"""

from dataclasses import dataclass, field

from shoal.route_contract import Breach, Verdict
from shoal.router.traffic.split import Split


class RolloutConflict(ValueError):
    """The weights asked for would send traffic to a rolled-back revision."""

    def __init__(self, role: str, revision: str):
        super().__init__(f"{role} revision {revision!r} was rolled back; reset it first")
        self.revision = revision


@dataclass
class PoolRollout:
    split: Split
    rolled_back: dict[str, Verdict] = field(default_factory=dict)

    def set_weights(self, stable: str, canary: str | None, canary_weight: float) -> Split:
        """Raises ValueError for bad weights, RolloutConflict for a rolled-back revision."""
        split = Split(stable, canary, canary_weight)  # validates
        if stable in self.rolled_back:
            raise RolloutConflict("stable", stable)
        if canary in self.rolled_back and canary_weight > 0:
            raise RolloutConflict("canary", canary)
        self.split = split
        return split

    def roll_back(self, breaches: list[Breach], wall_now: float) -> Verdict | None:
        """Pulls the canary out if any rule broke and it is still taking traffic."""
        canary = self.split.canary
        if not breaches or canary is None or canary in self.rolled_back:
            return None
        verdict = Verdict(canary, tuple(breaches), wall_now, self.split.canary_weight)
        self.rolled_back[canary] = verdict
        self.split = Split(self.split.stable, canary, 0.0)
        return verdict

    def reset(self, revision: str) -> bool:
        """Forgets a verdict; the revision's weight stays where it is (0) until set again."""
        return self.rolled_back.pop(revision, None) is not None

    @property
    def canary_active(self) -> bool:
        return (
            self.split.canary is not None and self.split.canary_weight > 0 and self.split.canary not in self.rolled_back
        )
