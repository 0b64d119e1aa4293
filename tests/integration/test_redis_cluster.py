"""The sink and the API on a real Redis Cluster: three primaries and three replicas, each a
``redis-server --cluster-enabled yes`` started here (on free ports, in the test's directory, stopped
by pid), joined with ``redis-cli --cluster create``.

A real worker writes the TLC sample's windows through the cluster client (every script and
pipeline in one hash slot, or the cluster would refuse it with CROSSSLOT); the stored windows, the
REST routes and the push stream of an API started against the cluster with replica reads must all
equal the reference computation, and the replicas must have served some of those reads.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio import RedisCluster

from agents.redis_writer import CHUNK, write_final, write_live
from api.timeparse import parse_time_ms
from app.redis_keys import RedisKeys
from app.settings import Settings
from support.kafka import read_topic
from support.procs import (
    Proc,
    StackInfo,
    free_port,
    redis_answers,
    start_api,
    start_worker,
    wait_for,
    wait_worker_ready,
)
from support.procs import replay as run_replay
from support.reference import Reference, WindowKey, reference_windows
from tests.integration.pipeline import Subscriber, assert_matches_reference, sorted_tlc_sample

PRIMARIES = 3
PUSHED_SIZE = "1h"


@dataclass
class ClusterNodes:
    """The nodes of a private Redis Cluster (primaries first) and their processes."""

    ports: list[int]
    procs: list[Proc]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def role_ports(self, role: str) -> list[int]:
        """Ports of the nodes that are currently ``master`` or ``slave``."""
        out = []
        for port in self.ports:
            with Redis(port=port) as client:
                if client.info("replication")["role"] == role:
                    out.append(port)
        return out


def _start_cluster(nodes: ClusterNodes, home: Path, replicas: int) -> None:
    """Start the nodes into ``nodes`` (so a failure half-way still leaves them to stop) and join them."""
    ports: list[int] = []
    bus_ports: list[int] = []
    while len(bus_ports) < PRIMARIES * (1 + replicas):
        port = free_port()
        if port not in ports and port not in bus_ports:
            (bus_ports if len(ports) > len(bus_ports) else ports).append(port)
    nodes.ports[:] = ports
    for port, bus_port in zip(ports, bus_ports, strict=True):
        node_dir = home / str(port)
        node_dir.mkdir(parents=True)
        args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir)]
        args += [
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            str(bus_port),
            "--cluster-config-file",
            "nodes.conf",
        ]
        args += ["--cluster-node-timeout", "5000", "--save", "", "--appendonly", "no"]
        nodes.procs.append(Proc(args, os.environ, node_dir / "redis.log"))
    for port, proc in zip(ports, nodes.procs, strict=True):
        url = f"redis://127.0.0.1:{port}/0"

        def answers(proc: Proc = proc, url: str = url) -> bool:
            if not proc.alive():
                raise AssertionError(f"redis-server exited:\n{proc.output()[-2000:]}")
            return redis_answers(url)

        wait_for(answers, 20, 0.05, what=f"cluster node :{port}")
    create = ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports)]
    create += ["--cluster-replicas", str(replicas), "--cluster-yes"]
    result = subprocess.run(create, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]

    def formed() -> bool:
        for port in ports:
            with Redis(port=port) as client:
                if client.cluster("info")["cluster_state"] != "ok":
                    return False
                replication = client.info("replication")
                if replication["role"] == "slave" and replication.get("master_link_status") != "up":
                    return False
        return True

    wait_for(formed, 60, 0.2, what="the cluster to be ok with every replica in sync")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterNodes]:
    nodes = ClusterNodes([], [])
    try:
        _start_cluster(nodes, tmp_path_factory.mktemp("redis-cluster"), replicas=1)
        yield nodes
    finally:
        for proc in nodes.procs:
            proc.stop(10)


def cluster_final_windows(nodes: ClusterNodes, app_id: str) -> dict[WindowKey, dict[str, Any]]:
    """Every final window stored for ``app_id``, read from each primary (SCAN is per node)."""
    pattern = RedisKeys(app_id).windows_pattern
    out: dict[WindowKey, dict[str, Any]] = {}
    for port in nodes.role_ports("master"):
        with Redis(port=port) as client:
            for key in client.scan_iter(match=pattern, count=1000):
                final, data = client.hmget(key, "final", "data")
                if final == b"1" and data:
                    win = orjson.loads(data)
                    out[(win["window"], win["region_id"], win["window_start_ms"])] = win
    return out


def _api_window(item: dict[str, Any]) -> dict[str, Any]:
    """An API window with the stored form's millisecond bounds, to compare with the reference."""
    return dict(
        item,
        window_start_ms=parse_time_ms(item["window_start"]),
        window_end_ms=parse_time_ms(item["window_end"]),
    )


def _api_windows(base: str, ref: Reference) -> dict[WindowKey, dict[str, Any]]:
    """Every final window of the reference's regions and sizes, as the API's history serves it."""
    out: dict[WindowKey, dict[str, Any]] = {}
    with httpx.Client(base_url=base, timeout=10) as client:
        for size, region in sorted({(size, region) for size, region, _ in ref.windows}):
            resp = client.get(f"/metrics/region/{region}/history", params={"window": size, "limit": 10_000})
            assert resp.status_code == 200, resp.text
            for item in resp.json()["items"]:
                win = _api_window(item)
                out[(size, region, win["window_start_ms"])] = win
    return out


def _complete(
    read: Callable[[], dict[WindowKey, dict[str, Any]]], expected: int
) -> Callable[[], dict[WindowKey, dict[str, Any]] | None]:
    """A predicate for :func:`wait_for`: what ``read`` returns once it has ``expected`` windows."""

    def check() -> dict[WindowKey, dict[str, Any]] | None:
        got = read()
        return got if len(got) >= expected else None

    return check


def _retained(ref: Reference) -> Reference:
    """The reference's windows that the history indexes keep: the sink trims each region's index
    to its size's retention behind the newest start written (the sample spans a month, longer
    than the 1m, 5m and 15m retention)."""
    retention_ms = {size: s * 1000 for size, s in Settings().retention_s().items()}
    newest: dict[tuple[str, int], int] = {}
    for size, region, start in ref.windows:
        newest[(size, region)] = max(start, newest.get((size, region), start))
    windows = {
        key: fold
        for key, fold in ref.windows.items()
        if key[2] >= newest[(key[0], key[1])] - retention_ms[key[0]]
    }
    return Reference(windows=windows)


def _replica_reads(nodes: ClusterNodes) -> int:
    """Read commands the replicas have served (their own commandstats)."""
    total = 0
    for port in nodes.role_ports("slave"):
        with Redis(port=port) as client:
            stats = client.info("commandstats")
            total += sum(
                int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("hmget", "zrange", "get")
            )
    return total


def test_sink_and_api_on_a_redis_cluster_equal_the_reference(
    stack: StackInfo, app_id: str, sp_env: dict[str, str], tmp_path: Path, cluster: ClusterNodes
) -> None:
    env = dict(sp_env, STREAMPULSE_REDIS_URL=cluster.url, STREAMPULSE_REDIS_CLUSTER="true")
    api_env = dict(env, STREAMPULSE_REDIS_READ_FROM_REPLICAS="true")
    api_port = free_port()
    worker = start_worker(env, tmp_path, "w1", free_port())
    api: Proc | None = None
    sub = Subscriber(f"http://127.0.0.1:{api_port}/stream?window={PUSHED_SIZE}")
    try:
        wait_worker_ready(worker)
        api = start_api(api_env, tmp_path, api_port)
        sub.start()
        run_replay(
            env, str(sorted_tlc_sample(tmp_path / "sample.csv")), "--rejects", str(tmp_path / "r.jsonl")
        )
        ref = reference_windows(read_topic(stack.bootstrap, f"{app_id}.events"))
        assert len(ref.windows) > 1000, "the sample must give many windows over several slots"

        stored = wait_for(
            _complete(lambda: cluster_final_windows(cluster, app_id), len(ref.windows)),
            180,
            interval=1,
            what=f"{len(ref.windows)} final windows in the cluster",
        )
        assert stored is not None
        assert_matches_reference(stored, ref)

        before = _replica_reads(cluster)
        # A replica may lag its primary by a moment: the API's answers are polled until complete.
        retained = _retained(ref)
        served = wait_for(
            _complete(lambda: _api_windows(f"http://127.0.0.1:{api_port}", ref), len(retained.windows)),
            60,
            interval=1,
            what="the API to serve every retained final window",
        )
        assert served is not None
        assert_matches_reference(served, retained)
        # Round robin over a slot's primary and replica: more reads reach a replica sooner or
        # later, and never with a client that ignored the setting.
        wait_for(
            lambda: _api_windows(f"http://127.0.0.1:{api_port}", ref) and _replica_reads(cluster) > before,
            30,
            interval=0.5,
            what="REDIS_READ_FROM_REPLICAS to send a read to a replica",
        )

        pushed_expected = {key for key in ref.windows if key[0] == PUSHED_SIZE}

        def pushed() -> set[WindowKey] | None:
            if sub.error is not None:
                raise AssertionError(f"subscriber failed: {sub.error!r}")
            got = {(w["window"], w["region_id"], parse_time_ms(w["window_start"])) for w in sub.finals()}
            return got if got >= pushed_expected else None

        assert wait_for(pushed, 60, interval=0.5, what="every final window on the stream") == pushed_expected
        assert len(sub.finals()) == len(pushed_expected), "a final window was pushed twice"
    finally:
        sub.stop.set()
        if api is not None:
            api.stop()
        worker.stop()
        with Redis(port=cluster.ports[0]) as client:
            assert client.cluster("info")["cluster_state"] == "ok"


def _snapshot(urls: list[str], prefix: str) -> dict[bytes, Any]:
    """Every key under ``prefix`` on these servers with its value (``last_final_ms`` left out: a clock)."""
    out: dict[bytes, Any] = {}
    for url in urls:
        with Redis.from_url(url) as client:
            for key in client.scan_iter(match=f"{prefix}*", count=1000):
                kind = client.type(key)
                if key.endswith(b"last_final_ms"):
                    continue
                if kind == b"hash":
                    out[key] = client.hgetall(key)
                elif kind == b"zset":
                    out[key] = client.zrange(key, 0, -1, withscores=True)
                elif kind == b"set":
                    out[key] = sorted(client.smembers(key))
                elif kind == b"stream":
                    out[key] = [fields for _, fields in client.xrange(key)]
                else:
                    out[key] = client.get(key)
    return out


async def test_the_sink_writes_leave_on_a_cluster_what_they_leave_on_one_redis(
    stack: StackInfo, app_id: str, cluster: ClusterNodes
) -> None:
    """The same live and final writes through both clients give the same keys and values, and the
    cluster holds each window size's keys on one node."""
    retention_s = {"1m": 3_600, "5m": 7_200, "1h": 86_400}
    sizes_ms = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000}
    base = 1_740_000_000_000
    batch = [
        {"window": size, "region_id": region, "window_start_ms": base + i * ms, "n": i}
        for size, ms in sizes_ms.items()
        for region in range(1, 8)
        for i in range(CHUNK // 5)
    ]
    live = [dict(w, final=False, n=-1) for w in batch[::3]]
    keys = RedisKeys(app_id)
    single = AsyncRedis.from_url(stack.redis_url)
    clustered = RedisCluster.from_url(cluster.url)
    try:
        for client in (single, clustered):
            await write_live(client, keys, live, retention_s)
            await write_final(client, keys, batch, retention_s)
            await write_live(client, keys, live, retention_s)
    finally:
        await single.aclose()
        await clustered.aclose()

    on_one = _snapshot([stack.redis_url], keys.prefix)
    primaries = [f"redis://127.0.0.1:{port}/0" for port in cluster.role_ports("master")]
    assert _snapshot(primaries, keys.prefix) == on_one
    assert len(on_one) > len(batch)
    for size in sizes_ms:
        holders = [url for url in primaries if _snapshot([url], f"{keys.prefix}*{keys.slot_tag(size)}*")]
        assert len(holders) == 1, (size, holders)
