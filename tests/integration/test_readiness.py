"""``GET /ready`` of a real worker and a real API: what the demo, the tests, Compose and the bench
wait on (app/readiness.py)."""

from __future__ import annotations

from pathlib import Path

from app.readiness import READY_PATH, probe, wait_ready
from support.procs import Proc, RedisServer, free_port, start_api, start_worker, wait_for


def test_a_worker_is_ready_with_its_partitions_and_a_second_one_takes_half(
    sp_env: dict[str, str], tmp_path: Path, processes: list[Proc]
) -> None:
    first_port, second_port = free_port(), free_port()
    first = f"http://127.0.0.1:{first_port}{READY_PATH}"
    processes.append(start_worker(sp_env, tmp_path, "first", first_port))
    status, body = probe(first)
    assert status in (0, 503), body  # not ready the moment it starts: nothing assigned yet
    assert wait_ready(first, timeout=120)["partitions"] == 4

    processes.append(start_worker(sp_env, tmp_path, "second", second_port))
    second = f"http://127.0.0.1:{second_port}{READY_PATH}"

    def shared() -> bool:
        answers = [probe(url) for url in (first, second)]
        if any(status != 200 for status, _ in answers):
            return False
        return sorted(body["partitions"] for _, body in answers if body) == [2, 2]

    wait_for(shared, 120, interval=0.5, what="both workers ready with two partitions each")
    body = probe(first)[1]
    assert body is not None and body["ready"] is True and body["failing"] == []


def test_the_api_is_ready_only_while_redis_answers(
    sp_env: dict[str, str], tmp_path: Path, processes: list[Proc]
) -> None:
    redis = RedisServer(tmp_path / "redis")
    processes.append(redis.start())
    api_port = free_port()
    processes.append(start_api({**sp_env, "STREAMPULSE_REDIS_URL": redis.url}, tmp_path, api_port))
    url = f"http://127.0.0.1:{api_port}{READY_PATH}"
    assert wait_ready(url, timeout=30) == {"ready": True, "failing": [], "checks": {"redis": True}}

    redis.stop()
    status, body = probe(url)
    assert (status, body) == (503, {"ready": False, "failing": ["redis"], "checks": {"redis": False}})

    processes.append(redis.start())
    assert wait_ready(url, timeout=30)["ready"] is True
