"""The stack is real: a JVM running kafka.Kafka from the Maven Central jars, and redis-server."""

from __future__ import annotations

import subprocess
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from redis.asyncio import Redis

from tests.integration.stack import StackInfo


def test_broker_is_the_maven_central_kafka_jvm(stack: StackInfo) -> None:
    procs = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    kafka = [line for line in procs.splitlines() if "kafka.Kafka" in line and line.startswith("java")]
    assert kafka, "no JVM running kafka.Kafka"
    assert ".cache/kafka/" in kafka[0] and "lib/*" in kafka[0]


async def test_produce_and_consume_on_the_real_broker(stack: StackInfo) -> None:
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for i in range(20):
            await producer.send_and_wait(topic, f"v{i}".encode(), key=str(i % 2).encode())
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest", group_id=f"g-{topic}"
    )
    await consumer.start()
    got: list[bytes] = []
    try:
        for _ in range(50):
            batch = await consumer.getmany(timeout_ms=500)
            got.extend(m.value for msgs in batch.values() for m in msgs if m.value is not None)
            if len(got) >= 20:
                break
    finally:
        await consumer.stop()
    assert sorted(got) == sorted(f"v{i}".encode() for i in range(20))


async def test_redis_write_and_read(stack: StackInfo) -> None:
    client = Redis.from_url(stack.redis_url)
    key = f"smoke:{uuid.uuid4().hex}"
    try:
        await client.set(key, "hello", ex=60)
        assert await client.get(key) == b"hello"
        info = await client.info("persistence")
        assert info["aof_enabled"] == 1
    finally:
        await client.delete(key)
        await client.aclose()
