"""Kill a spurmem command with SIGKILL at its Nth atomic write (a test helper, not a test).

:func:`run_killed` forks the test process (torch and spurmem already imported, so no start-up
cost) and runs ``spurmem ARGV`` in the child with ``os.replace`` wrapped:

* ``inside``: the Nth atomic write has its temporary file written but the child is killed before
  ``os.replace`` (the ``.*.tmp`` stays, the target keeps its old content);
* ``after``: killed just after the Nth replace (between two writes).

Atomic writes are told from other ``os.replace`` calls by their temporary file's name
(``.<name>.*.tmp``). :func:`count_writes` runs a command in-process and counts its atomic writes,
so tests place kill points inside the command's real range.
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from typing import Callable, Iterator


def _ours(src) -> bool:
    name = os.path.basename(os.fspath(src))
    return name.startswith(".") and name.endswith(".tmp")


@contextmanager
def _hooked(on_write: Callable[[int, str], None]) -> Iterator[list[int]]:
    real = os.replace
    count = [0]

    def replace(src, dst, *args, **kwargs):
        if not _ours(src):
            return real(src, dst, *args, **kwargs)
        count[0] += 1
        on_write(count[0], "inside")
        real(src, dst, *args, **kwargs)
        on_write(count[0], "after")

    os.replace = replace
    try:
        yield count
    finally:
        os.replace = real


def count_writes(argv: list[str]) -> int:
    """Run ``spurmem ARGV`` here (it must succeed) and return how many atomic writes it made."""
    from spurmem.cli import main

    with _hooked(lambda n, when: None) as count:
        assert main(argv) == 0, argv
    return count[0]


def run_killed(argv: list[str], n: int, mode: str) -> None:
    """Fork, run ``spurmem ARGV`` in the child and SIGKILL it at its ``n``-th atomic write (``mode``
    ``inside`` or ``after``); asserts the child really died by SIGKILL (not by finishing early)."""
    assert mode in ("inside", "after"), mode
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 3
        try:
            def kill(count: int, when: str) -> None:
                if count == n and when == mode:
                    os.kill(os.getpid(), signal.SIGKILL)

            from spurmem.cli import main

            with _hooked(kill):
                main(argv)
            code = 4  # finished before the kill point
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
        f"{argv} at write {n} ({mode}): exited with {os.waitstatus_to_exitcode(status)} instead of being killed")
