"""A thread pool whose workers never hold up the end of the process.

`concurrent.futures.ThreadPoolExecutor` joins its workers at interpreter exit, so a kernel
shut down or restarted after Ctrl-C waits for every request still in flight (up to a request's
deadline). Requests are idempotent from our side (a seeded result lands in the cache, or is asked
for again), so their threads can simply die with the process: these workers are daemons.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
_Job = tuple["Future[Any]", Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class DaemonPool:
    """`submit` / `shutdown` like `ThreadPoolExecutor`, on daemon threads started on demand."""

    def __init__(self, max_workers: int, thread_name_prefix: str = "oxen-magic") -> None:
        self._max = max(1, max_workers)
        self._prefix = thread_name_prefix
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._jobs.put((future, fn, args, kwargs))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._max:
                thread = threading.Thread(
                    target=self._work, name=f"{self._prefix}_{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        return future

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                self._jobs.put(None)  # wake the next worker too
                return
            future, fn, args, kwargs = job
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # handed to the caller, as the stdlib pool does
                    future.set_exception(exc)
                else:
                    future.set_result(result)
                    del result  # an idle worker must not keep its last answer (an image) alive
            del job, future, fn, args, kwargs
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new work; with `cancel_futures` queued work is cancelled; `wait` joins the workers."""
        with self._lock:
            self._closed = True
            if cancel_futures:
                while True:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is not None:
                        job[0].cancel()
            self._jobs.put(None)
        if wait:
            for thread in list(self._threads):
                thread.join()
