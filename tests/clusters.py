"""Helpers for tests on a local Redis Cluster (devservers.cluster)."""

from __future__ import annotations

from redis.asyncio.cluster import RedisCluster

from agentmem.devservers.cluster import ClusterNode, LocalCluster
from agentmem.memory.connections import MemoryConfig, connect_redis
from agentmem.memory.keys import Keyspace


async def owner_of(cluster: LocalCluster, namespace: str) -> ClusterNode:
    """The node serving the namespace's hash slot now (every key of a namespace shares it)."""
    client = await connect_redis(MemoryConfig(redis_url=cluster.url))
    try:
        assert isinstance(client, RedisCluster)
        node = client.get_node_from_key(Keyspace(namespace).fact_seq())
        assert node is not None
        return cluster.node_on(int(node.port))
    finally:
        await client.aclose()
