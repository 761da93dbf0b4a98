"""The Faust floor for `churnwatch bench`: a do-nothing Faust agent reading the bench topics in the worker's batches.

It separates what Faust's own per-record path costs (fetch loop, conductor, channel queue, stream iterator,
`take_events`, acknowledgement) from what churnwatch adds on top, so the bench can say how far the worker is from
any Faust-stream-based consumer on the same machine, not only from a raw aiokafka consumer. Run as
`python -m streams.tools.faust_floor OUT BOOTSTRAP GROUP TOTAL WARMUP TOPIC...`; it writes one JSON object
`{"eps": ..., "cpu_us_per_event": ...}` to the file OUT (Faust takes over stdout) and exits once TOTAL records
were taken.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import Any

import faust
import orjson

BATCH = 2000  # the worker's default CHURNWATCH_BATCH_SIZE
WITHIN_S = 0.2  # the worker's default CHURNWATCH_BATCH_TIMEOUT_S


def main(argv: list[str]) -> None:
    out, bootstrap, group, total_s, warmup_s, *topics = argv
    total, warmup = int(total_s), int(warmup_s)
    app = faust.App(group, broker=f"kafka://{bootstrap}", store="memory://", web_enabled=False,
                    consumer_auto_offset_reset="earliest", datadir=tempfile.mkdtemp(prefix="faust-floor-"),
                    processing_guarantee="at_least_once")
    source = app.topic(*topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    seen = {"n": 0}
    start: dict[str, float] = {}

    @app.agent(source, concurrency=1)
    async def take(stream: Any) -> None:
        async for events in stream.take_events(BATCH, within=WITHIN_S):
            seen["n"] += len(events)
            if not start and seen["n"] >= warmup:  # like the worker's rate: after the first 10% of the topic
                start.update(wall=time.perf_counter(), cpu=time.process_time(), n=seen["n"])
            if seen["n"] >= total and start:
                n = seen["n"] - start["n"]
                wall, cpu = time.perf_counter() - start["wall"], time.process_time() - start["cpu"]
                result = {"eps": n / wall if wall > 0 else 0.0, "cpu_us_per_event": 1e6 * cpu / max(n, 1)}
                with open(out, "wb") as fh:
                    fh.write(orjson.dumps(result))
                os._exit(0)  # a measurement process: nothing to commit or clean up

    sys.argv = ["faust-floor", "worker", "--loglevel", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main(sys.argv[1:])
