"""Several candidates evaluated at once (`SearchConfig.parallel`).

A round proposes `parallel` candidates one after the other, each from the archive as it stands
(proposing reads and writes the strategy's state, so it is never concurrent), then evaluates them
together: their samples meet in the engine's batches, so a round of small subset stages costs
about one stage's wall time. While a round is evaluated its candidates are `Campaign.pending`:
promotion and racing compare each with the candidates before the round, never with a sibling that
happened to finish first, so what is promoted and found does not depend on thread timing and a
seeded campaign replays. The round's candidates do not see each other's scores: to `bayes` a
pending candidate counts as 0 (a pessimistic constant liar), which steers the round's later
proposals away from its earlier ones.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any


def run_round(camp: Any, indices: range) -> None:
    """Propose the candidates of iterations `indices` in order, then evaluate them together; the
    first error of an evaluation is raised once all of them have ended."""
    todo = [p for p in (camp.prepare_iteration(i) for i in indices) if p is not None]
    if not todo:
        return
    camp.pending = {cid for cid, _, _ in todo}
    errors: list[BaseException] = []
    try:
        with ThreadPoolExecutor(len(todo), thread_name_prefix="agentmeta-candidate") as pool:
            for future in [pool.submit(camp.evaluate_candidate, *p) for p in todo]:
                try:
                    future.result()
                except BaseException as e:  # noqa: BLE001 - raised below, after the others ended
                    errors.append(e)
    finally:
        camp.pending = set()
    if errors:
        raise errors[0]
