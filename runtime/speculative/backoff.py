"""When a request's drafts stop paying: a running acceptance rate per request; below the threshold the
request drafts nothing for a number of steps that doubles each time it fails again, then tries again."""

from dataclasses import dataclass

SMOOTHING = 0.5  # weight of the newest step in the running rate
FIRST_BACKOFF_STEPS = 8
MAX_BACKOFF_STEPS = 256


@dataclass(frozen=True)
class DraftState:
    acceptance: float = 1.0  # running rate of drafts accepted
    skip_steps: int = 0  # steps left without drafts
    backoff_steps: int = FIRST_BACKOFF_STEPS  # the next pause, if the rate falls again

    @property
    def drafting(self) -> bool:
        return self.skip_steps == 0


def after_verify(state: DraftState, proposed: int, accepted: int, min_acceptance: float) -> DraftState:
    rate = SMOOTHING * (accepted / proposed) + (1 - SMOOTHING) * state.acceptance
    if rate >= min_acceptance:
        return DraftState(rate, 0, FIRST_BACKOFF_STEPS)
    # Paused: after the pause it starts from the threshold, so one bad step pauses it again, longer.
    return DraftState(min_acceptance, state.backoff_steps, min(state.backoff_steps * 2, MAX_BACKOFF_STEPS))


def after_step_without_drafts(state: DraftState) -> DraftState:
    if state.skip_steps == 0:
        return state
    return DraftState(state.acceptance, state.skip_steps - 1, state.backoff_steps)
