"""Keeps ``labelstream up``'s worker processes running.

A worker that exits (a crash, ``kill -9``, an out-of-memory kill) is reaped (no zombie) and
started again after a back-off that doubles from ``MIN_BACKOFF_S`` to ``MAX_BACKOFF_S`` and
resets once a worker has run ``HEALTHY_S``. Workers get SIGTERM when ``up`` itself dies, even
by SIGKILL (Linux ``PR_SET_PDEATHSIG``), and their pids are kept in a file so the next ``up``
on the same data directory stops any that survived (``app.embedded.reap_stale``).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.embedded import _die_with_parent

MIN_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
HEALTHY_S = 60.0


@dataclass
class _Slot:
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0
    restart_at: float = 0.0
    restarts: int = 0


@dataclass
class Supervisor:
    command: Sequence[str]
    env: Mapping[str, str]
    count: int
    pid_file: Path
    say: Callable[[str], None] = print
    poll_s: float = 0.5
    slots: list[_Slot] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _spawn(self, slot: _Slot) -> None:
        slot.proc = subprocess.Popen(
            list(self.command),
            env=dict(self.env),
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        slot.started = time.monotonic()
        self._write_pids()

    def _write_pids(self) -> None:
        pids = [str(s.proc.pid) for s in self.slots if s.proc is not None and s.proc.poll() is None]
        self.pid_file.write_text("\n".join(pids))

    def start(self) -> None:
        self.slots = [_Slot() for _ in range(self.count)]
        for slot in self.slots:
            self._spawn(slot)
        self._thread = threading.Thread(target=self._watch, name="labelstream-supervisor", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            now = time.monotonic()
            for index, slot in enumerate(self.slots):
                proc = slot.proc
                if proc is not None and proc.poll() is not None:  # poll() also reaps it
                    slot.failures = 0 if now - slot.started >= HEALTHY_S else slot.failures + 1
                    delay = min(MAX_BACKOFF_S, MIN_BACKOFF_S * 2 ** max(0, slot.failures - 1))
                    self.say(f"worker {index} exited with {proc.returncode}; restarting in {delay:.0f} s")
                    slot.proc, slot.restart_at = None, now + delay
                if slot.proc is None and now >= slot.restart_at and not self._stop.is_set():
                    self._spawn(slot)
                    slot.restarts += 1

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        procs = [s.proc for s in self.slots if s.proc is not None]
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.pid_file.unlink(missing_ok=True)
