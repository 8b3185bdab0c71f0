"""schemathesis hooks of test_openapi.py (loaded through SCHEMATHESIS_HOOKS).

- The reading submissions take raw bytes (`application/cose`, `application/cbor`): they go on
  the wire as generated, like `application/octet-stream`.
- `wait_ms` asks the node to hold an answer until an item is final (up to 60 s, 10 s for
  block sync): kept short so that the run is bounded in time, not by the node's limits.
"""

import schemathesis

schemathesis.serializer.alias(["application/cose", "application/cbor"], "application/octet-stream")

MAX_WAIT_MS = 100


@schemathesis.hook
def map_query(ctx, query):
    if isinstance(query, dict) and isinstance(query.get("wait_ms"), int) and query["wait_ms"] > MAX_WAIT_MS:
        query["wait_ms"] = MAX_WAIT_MS
    return query
