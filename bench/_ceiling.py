"""``nurture serve`` with the click commit taken out: the ceiling for bench/tracker.py.

Everything a redirect does in the real tracker runs (routing, token check, link cache,
verdict, the click record, a future per request, security headers), except that the ledger
answers each wave of clicks at the end of the loop iteration instead of committing them.
What this row reaches is the most the tracker could do on the machine if committing were
free. Never used outside the benchmark: it loses every click.

    python bench/_ceiling.py --config CONFIG serve --workers 1 --no-reps-app
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nurture.cli import main  # noqa: E402
from nurture.store.tracking import NewClick  # noqa: E402
from nurture.web.ledger import ClickLedger  # noqa: E402


class _Uncommitted(ClickLedger):
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._waiting: list[asyncio.Future[int | None]] = []

    async def record(self, click: NewClick) -> int | None:
        fut = self._loop.create_future()
        if not self._waiting:
            self._loop.call_soon(self._answer)
        self._waiting.append(fut)
        return await fut

    def _answer(self) -> None:
        waiting, self._waiting = self._waiting, []
        for fut in waiting:
            fut.set_result(1)

    async def close(self) -> None:
        return None


if __name__ == "__main__":
    import nurture.web.tracker as tracker

    tracker.ClickLedger = _Uncommitted  # type: ignore[misc]
    main()
