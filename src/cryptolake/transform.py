"""The transform stage: silver from new bronze runs, then gold, retried on commit conflicts.

On a lake several machines write (a Postgres catalog), two transforms may race. DuckLake
commits non-conflicting changes side by side; every silver and gold commit also updates
`meta.commit_head`, so two racing builds always conflict and one of them is refused
(CommitConflict). That one is rerun from the top: it reads `silver.processed_runs` again,
finds the other's runs processed, and builds only what is still missing. Nothing is lost
(every batch commits whole or not at all) and nothing is doubled.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from .errors import CommitConflict

log = logging.getLogger(__name__)
T = TypeVar("T")
ATTEMPTS = 8


def retry_conflicts(
    build: Callable[[], T],
    *,
    what: str,
    attempts: int = ATTEMPTS,
    on_retry: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`build()`, rerun from the top (after a short random wait) while another writer's
    commit conflicts with its own; raises the last CommitConflict after `attempts` tries.

    `on_retry` gets the log line (a run's notes keep it).
    """
    for attempt in range(1, attempts + 1):
        try:
            return build()
        except CommitConflict as exc:
            if attempt == attempts:
                raise CommitConflict(
                    f"{exc} Gave up after {attempts} attempts: another writer keeps "
                    "committing; run it again when the lake is quieter."
                ) from None
            line = (
                f"{what}: another writer committed to the lake first; rerunning {what} from "
                f"the top (attempt {attempt + 1} of {attempts})"
            )
            log.warning(line)
            if on_retry is not None:
                on_retry(line)
            sleep(random.uniform(0.05, 0.25) * attempt)
    raise AssertionError("unreachable")
