"""Write records in batches off the request path, keeping them when the database is away.

The usage recorder (ingress) and the route-decision recorder (router) both queue a record per
request and must never make a request wait on the database: `add` only appends and, if no
writer task runs, starts one that sleeps `interval_s` and flushes, until nothing is pending.
A flush takes `batch_max` records at a time out of the pending list and hands them to a
blocking `write` in a thread; a failed write puts its batch back in front for the next flush.
Past `max_pending` the oldest are dropped, so a long outage costs memory up to that bound
(plus the batch in flight) and no more. One flush runs at a time, so a batch is never handed
to `write` twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection
from typing import Generic, TypeVar

T = TypeVar("T")
# A replica's final flush waits at most this long (Serve's graceful_shutdown_timeout_s is 20 s).
SHUTDOWN_FLUSH_S = 2.0


class BatchWriter(Generic[T]):
    def __init__(self, write: Callable[[list[T]], object], *, interval_s: float, batch_max: int,
                 max_pending: int, what: str, log: logging.Logger) -> None:
        self.interval_s = interval_s  # read before each sleep, so a reconfigure takes effect
        self._write = write
        self._batch_max = batch_max
        self._max_pending = max_pending
        self._what = what  # names the records in the retry warning
        self._log = log
        self._pending: list[T] = []
        self._in_flight = 0  # records of the batch being written
        self._task: asyncio.Task | None = None
        self._flushing = asyncio.Lock()

    @property
    def pending(self) -> int:
        """Records not written yet, the batch being written included."""
        return len(self._pending) + self._in_flight

    def add(self, item: T) -> None:
        """Queue one record (call on the event loop); never blocks, never raises."""
        self._pending.append(item)
        if len(self._pending) > self._max_pending:
            del self._pending[: len(self._pending) - self._max_pending]
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._pending:
            await asyncio.sleep(self.interval_s)
            await self.flush()

    async def flush(self) -> bool:
        """Write everything pending; False (records kept) if a write failed."""
        async with self._flushing:
            return await self._flush()

    async def _flush(self) -> bool:
        while self._pending:
            # Taken out before the write: `add` may drop the oldest meanwhile, and a cleanup by
            # count afterwards would then remove records that were never written.
            batch = self._pending[: self._batch_max]
            del self._pending[: len(batch)]
            self._in_flight = len(batch)
            try:
                await asyncio.to_thread(self._write, batch)
            except Exception as exc:  # put them back in front; the next flush retries
                self._pending[:0] = batch
                if len(self._pending) > self._max_pending:
                    del self._pending[: len(self._pending) - self._max_pending]
                self._log.warning("%s not written yet (%s); will retry", self._what, type(exc).__name__)
                return False
            finally:
                self._in_flight = 0
        return True

    async def stop(self) -> bool:
        """Stop the periodic writer and flush what is pending once more (at shutdown)."""
        async with self._flushing:  # the writer task sleeps or waits here: no write in flight
            task, self._task = self._task, None
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            return await self._flush()

    async def close(self, timeout_s: float, producers: Collection[asyncio.Task] = ()) -> bool:
        """`stop`, bounded: at replica shutdown a database that does not answer must not hold
        the shutdown up. `producers`: tasks still making records, given up to half of the time
        first. False (and a warning counting what is lost) if not all was written."""
        end = asyncio.get_running_loop().time() + timeout_s
        if producers:
            await asyncio.wait(set(producers), timeout=timeout_s / 2)
        try:
            ok = await asyncio.wait_for(self.stop(), max(0.0, end - asyncio.get_running_loop().time()))
        except TimeoutError:  # a write cut off here may still land from its thread
            ok = False
        if not ok:
            self._log.warning("%s: %d not written at shutdown (final flush failed or took over %.1f s)",
                              self._what, self.pending, timeout_s)
        return ok
