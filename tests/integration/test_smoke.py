"""The stack answers: a Kafka broker that creates topics and keeps records, a Redis that keeps keys.

Whichever Kafka and Redis the session reuses (``make up``'s, a private one, another machine's)
must pass: nothing here depends on how they were started.
"""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from redis.asyncio import Redis

from support.procs import StackInfo


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
        assert 0 < await client.ttl(key) <= 60
    finally:
        await client.delete(key)
        await client.aclose()
