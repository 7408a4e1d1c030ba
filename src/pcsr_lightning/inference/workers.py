"""The routed part's blocks on worker threads, one intra-op thread each, so a busy machine slows it gently.

The routed part is many short operators. Split over every intra-op thread, each one ends in a barrier,
and a single thread the OS has descheduled (a neighbour process took its core) stalls all of them, once
per operator. Here ``n`` Python threads (torch releases the GIL inside its operators) each take whole
blocks from a shared queue and run them on one intra-op thread: a stalled thread delays only the block it
holds while the others take the rest, and the only barrier is at the end of a phase. Blocks write
disjoint outputs, so the result does not depend on which thread ran which block.

``n == 0`` is the former behaviour (``$PCSR_ROUTED_THREADS=0``): the blocks run in order on the calling
thread, every operator split over torch's intra-op threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import torch

ENV = "PCSR_ROUTED_THREADS"


def default_threads() -> int:
    """The routed part's workers when nobody says: one per intra-op thread, none with a single thread.
    Faster quiet and far less slowed by a busy neighbour than the former path, with AVX-512 and with
    AVX2 kernels alike (docs/performance.md, "Busy machines")."""
    n = torch.get_num_threads()
    return n if n > 1 else 0


def routed_threads(requested: int | None = None, device: torch.device | str = "cpu") -> int:
    """Workers for the routed part: ``requested``, else ``$PCSR_ROUTED_THREADS``, else ``default_threads``.
    0: no workers (the former path). Always 0 off the CPU, where one launch per operator is the
    parallelism."""
    if torch.device(device).type != "cpu":
        return 0
    if requested is None:
        text = os.environ.get(ENV, "").strip()
        if text:
            try:
                requested = int(text)
            except ValueError:
                raise ValueError(f"{ENV} must be an integer >= 0, got {text!r}") from None
    if requested is None:
        return default_threads()
    if requested < 0:
        raise ValueError(f"routed threads must be >= 0, got {requested}")
    return requested


_END = object()


class Workers:
    """``with Workers(n) as workers: workers.run(work, items)``.

    Inside the ``with`` (for ``n`` >= 1) torch runs one intra-op thread on the calling thread too, so
    cache budgets (``cache.cpu_cache_budget``) are one core's; the former thread count is restored on
    exit, also after an error. ``run`` calls ``work(item, local)`` for every item, each thread passing its
    own ``local`` dict (per-thread buffers). Under torch's profiler, which sees only the calling thread,
    the items run there, in order, with the same one-thread operators.
    """

    def __init__(self, n: int):
        if n < 0:
            raise ValueError(f"workers must be >= 0, got {n}")
        self.n = n
        self.saved: int | None = None
        self.pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> Workers:
        if self.n:
            self.saved = torch.get_num_threads()  # also initialises this thread's setting before it changes
            torch.set_num_threads(1)
            if self.n > 1:
                try:
                    self.pool = ThreadPoolExecutor(self.n, "pcsr-routed", initializer=torch.set_num_threads,
                                                   initargs=(1,))
                except BaseException:
                    torch.set_num_threads(self.saved)
                    raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.pool is not None:
                self.pool.shutdown(wait=True)
        finally:
            self.pool = None
            if self.saved is not None:
                torch.set_num_threads(self.saved)
                self.saved = None

    def run(self, work: Callable[[object, dict], None], items: Iterable) -> None:
        """``work(item, local)`` for every item, on the workers; returns when all are done (the phase's
        one barrier). The first error stops the other threads after their current item and is raised."""
        if self.pool is None or torch.autograd._profiler_enabled():
            local: dict = {}
            for item in items:
                work(item, local)
            return
        queue, lock, failed = iter(items), threading.Lock(), threading.Event()
        # Thread-local modes a new thread does not inherit: grad mode, and inference mode, under which the
        # caller's tensors (Lightning's validation, ``torch.inference_mode`` users) may only be written.
        grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

        def drain() -> None:
            with torch.inference_mode(inference):
                torch.set_grad_enabled(grad)
                run_items()

        def run_items() -> None:
            local: dict = {}
            while not failed.is_set():
                with lock:
                    item = next(queue, _END)
                if item is _END:
                    return
                try:
                    work(item, local)
                except BaseException:
                    failed.set()
                    raise

        futures = [self.pool.submit(drain) for _ in range(self.n)]
        for future in futures:
            future.exception()  # wait for every thread before raising: none may still write
        for future in futures:
            future.result()
