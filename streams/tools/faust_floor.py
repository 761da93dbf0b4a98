"""The floors for `churnwatch bench`: a do-nothing Faust agent reading the bench topics in the worker's batches.

They separate what an input path costs from what churnwatch adds on top, so the bench can say how far the worker
is from a do-nothing consumer on the same machine, not only from a raw aiokafka consumer. Two paths:
- `stream`: Faust's own per-record path (fetch loop, conductor, channel queue, stream iterator, `take_events`),
  which the account agent used before ADR 0011;
- `batch`: the account agent's path since ADR 0011 (Faust's fetch loop into `streams.adapters.batch_input`).
Run as `python -m streams.tools.faust_floor {stream|batch} OUT BOOTSTRAP GROUP TOTAL WARMUP TOPIC...`; it writes
one JSON object `{"eps": ..., "cpu_us_per_event": ...}` to the file OUT (Faust takes over stdout) and exits once
TOTAL records were taken (and acknowledged).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import Any

import faust
import orjson

from streams.adapters.batch_input import BatchInput, bound_fetch_wait, install
from streams.settings import Settings

BATCH: int = Settings.model_fields["batch_size"].default  # the worker's defaults
WITHIN_S: float = Settings.model_fields["batch_timeout_s"].default
FETCH_MAX_WAIT_MS: int = Settings.model_fields["fetch_max_wait_ms"].default
FETCH_MIN_BYTES: int = Settings.model_fields["fetch_min_bytes"].default


def main(argv: list[str]) -> None:
    mode, out, bootstrap, group, total_s, warmup_s, *topics = argv
    total, warmup = int(total_s), int(warmup_s)
    app = faust.App(group, broker=f"kafka://{bootstrap}", store="memory://", web_enabled=False,
                    consumer_auto_offset_reset="earliest", datadir=tempfile.mkdtemp(prefix="faust-floor-"),
                    processing_guarantee="at_least_once")
    # The worker's fetch settings (ADR 0015, ADR 0026), for both input paths.
    bound_fetch_wait(app, FETCH_MAX_WAIT_MS, FETCH_MIN_BYTES)
    source = app.topic(*topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    seen = {"n": 0}
    start: dict[str, float] = {}

    def count(n_taken: int) -> None:
        seen["n"] += n_taken
        if not start and seen["n"] >= warmup:  # like the worker's rate: after the first 10% of the topic
            start.update(wall=time.perf_counter(), cpu=time.process_time(), n=seen["n"])
        if seen["n"] >= total and start:
            n = seen["n"] - start["n"]
            wall, cpu = time.perf_counter() - start["wall"], time.process_time() - start["cpu"]
            result = {"eps": n / wall if wall > 0 else 0.0, "cpu_us_per_event": 1e6 * cpu / max(n, 1)}
            with open(out, "wb") as fh:
                fh.write(orjson.dumps(result))
            os._exit(0)  # a measurement process: nothing to commit or clean up

    if mode == "stream":
        @app.agent(source, concurrency=1)
        async def take(stream: Any) -> None:
            async for events in stream.take_events(BATCH, within=WITHIN_S):  # acknowledged by take_events
                count(len(events))
    elif mode == "batch":
        batch_input = BatchInput(topics, BATCH)
        install(app, batch_input)

        @app.agent(source, concurrency=1)
        async def take_batches(stream: Any) -> None:
            ack = app.consumer.ack
            while True:
                messages = await batch_input.take(WITHIN_S)
                for msg in messages:
                    ack(msg)
                count(len(messages))
    else:
        raise SystemExit(f"faust_floor: mode must be 'stream' or 'batch', not {mode!r}")

    sys.argv = ["faust-floor", "worker", "--loglevel", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main(sys.argv[1:])
