"""The workers' process pool (gateway.pipeline.pool): real processes, real pipes."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from concurrent.futures.process import BrokenProcessPool

import pytest

from gateway.pipeline.pool import ProcessPool


def _echo(data: bytes) -> bytes:
    return data[::-1]


def _fail(reason: str) -> None:
    raise ValueError(reason)


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.fixture
def pool():
    p = ProcessPool(2)
    yield p
    p.shutdown()


async def test_results_and_errors_come_back(pool):
    big = os.urandom(3 << 20)  # larger than the pipes: written and read in several rounds
    assert await pool.run(_echo, big) == big[::-1]
    with pytest.raises(ValueError, match="no such drug") as err:
        await pool.run(_fail, "no such drug")
    # The pool process's traceback travels with the exception, for the worker's log.
    assert any("in _fail" in note for note in err.value.__notes__)


async def test_calls_beyond_the_pool_size_wait_for_a_process(pool):
    pids = await asyncio.gather(*(pool.run(_pid_after, 0.2) for _ in range(6)))
    assert len(set(pids)) == 2 and os.getpid() not in pids


async def test_a_dead_process_fails_its_call_only_and_is_replaced(pool):
    before = set(await asyncio.gather(*(pool.run(_pid_after, 0.2) for _ in range(2))))
    died, other = await asyncio.gather(pool.run(_die), pool.run(_pid_after, 0.3),
                                       return_exceptions=True)
    assert isinstance(died, BrokenProcessPool) and other in before
    after = set(await asyncio.gather(*(pool.run(_pid_after, 0.2) for _ in range(4))))
    assert len(after) == 2 and after & before == {other}  # a new process took the dead one's place


async def test_a_cancelled_call_does_not_confuse_the_next_one(pool):
    task = asyncio.create_task(pool.run(_pid_after, 0.3))
    await asyncio.sleep(0.1)
    task.cancel()
    # Both processes serve on: the cancelled call's result is read and dropped.
    assert await asyncio.gather(*(pool.run(_echo, b"ab") for _ in range(4))) == [b"ba"] * 4


async def test_shutdown_ends_every_process():
    pool = ProcessPool(2)
    await asyncio.gather(*(pool.run(_pid_after, 0.1) for _ in range(2)))
    processes = [p.proc for p in pool._all]
    pool.shutdown()
    assert processes and not any(p.is_alive() for p in processes)
    with pytest.raises(RuntimeError):
        await pool.run(os.getpid)


def test_a_process_using_the_pool_exits_without_shutting_it_down(tmp_path):
    """Idle pool processes wait for calls: at exit the pool ends them before multiprocessing
    waits for its children (else the interpreter never exits)."""
    import subprocess
    import sys

    script = tmp_path / "use_pool.py"
    script.write_text(
        "import asyncio, os\n"
        "from gateway.pipeline.pool import ProcessPool\n"
        "POOL = ProcessPool(2)  # alive until the end, like the pipeline's\n"
        "async def main():\n"
        "    print(await POOL.run(os.getpid) != os.getpid())\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": root})
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr


async def test_a_call_past_its_deadline_fails_and_its_process_is_replaced():
    from pathlib import Path

    from gateway.pipeline.pool import CallTimeout

    pool = ProcessPool(1)
    try:
        first = await pool.run(_pid_after, 0)
        with pytest.raises(CallTimeout, match="did not finish within 0.5 s"):
            await pool.run(_pid_after, 3600, deadline=0.5)
        second = await pool.run(_pid_after, 0, deadline=30)  # a new process serves
        assert second != first
        stat = Path(f"/proc/{first}/stat")
        deadline = time.monotonic() + 10
        while stat.exists() and ") Z " not in stat.read_text() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not stat.exists() or ") Z " in stat.read_text(), "the stuck process still runs"
    finally:
        pool.shutdown()
