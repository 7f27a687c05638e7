"""When drafts stop paying: a running acceptance rate; below the threshold, nothing is drafted for a
number of steps that doubles each time it fails again, then it tries again. Kept per request, and
for the whole engine, where a new request starts: while nobody's drafts pay (a draft model that
does not fit the traffic), a new request starts paused as long as the last pause, instead of
paying for a failed draft of its own first."""

from dataclasses import dataclass

SMOOTHING = 0.5  # weight of the newest step in a request's running rate
ENGINE_SMOOTHING = 0.25  # and in the engine's, over every request's steps
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


def after_verify(
    state: DraftState, proposed: int, accepted: int, min_acceptance: float, smoothing: float = SMOOTHING
) -> DraftState:
    rate = smoothing * (accepted / proposed) + (1 - smoothing) * state.acceptance
    if rate >= min_acceptance:
        return DraftState(rate, 0, FIRST_BACKOFF_STEPS)
    # Paused: after the pause it starts from the threshold, so one bad step pauses it again, longer.
    return DraftState(min_acceptance, state.backoff_steps, min(state.backoff_steps * 2, MAX_BACKOFF_STEPS))


def after_step_without_drafts(state: DraftState) -> DraftState:
    if state.skip_steps == 0:
        return state
    return DraftState(state.acceptance, state.skip_steps - 1, state.backoff_steps)
