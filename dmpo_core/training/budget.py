"""A wall-clock budget for one invocation of the training loop (``max_minutes``).

A demo that must finish in ten minutes cannot know the machine's speed in advance: the
same step took 0.33 s on one 2-core machine and 0.8 s on another. The budget lets a run
take every step it can afford and still end with a final evaluation and checkpoint,
instead of being killed by the user. It decides only WHERE a run stops: the steps taken
are the same as without a budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TimeBudget:
    """Tracks elapsed time, step times and the cost of an evaluation and a checkpoint.

    ``clock`` is injectable so the rule can be tested without sleeping.
    """

    def __init__(self, minutes: float | None, clock: Callable[[], float] = time.perf_counter) -> None:
        self.seconds = None if minutes is None else 60.0 * minutes
        self.clock = clock
        self.start = clock()
        self.step_seconds: list[float] = []
        self.eval_seconds = 0.0
        self.save_seconds = 0.0

    def note_step(self, seconds: float) -> None:
        self.step_seconds.append(seconds)

    def note_eval(self, seconds: float) -> None:
        self.eval_seconds = max(self.eval_seconds, seconds)

    def note_save(self, seconds: float) -> None:
        self.save_seconds = max(self.save_seconds, seconds)

    @property
    def elapsed(self) -> float:
        return self.clock() - self.start

    def exhausted(self) -> bool:
        """True when one more step, then a final evaluation and checkpoint, would overrun.

        The next step is predicted by the mean step time so far, the evaluation and the
        checkpoint by the slowest seen (0 before the first).
        """
        if self.seconds is None or not self.step_seconds:
            return False
        next_step = sum(self.step_seconds) / len(self.step_seconds)
        return self.elapsed + next_step + self.eval_seconds + self.save_seconds > self.seconds
