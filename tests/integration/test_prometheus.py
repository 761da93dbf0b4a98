"""A real Prometheus server scrapes a real worker processing events; the series exist with sensible values."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from streams.tools.produce import produce_lines
from tests.support.stack_fixtures import free_port, wait_for_http

pytestmark = pytest.mark.integration


def query(base: str, promql: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = orjson.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_scrapes_the_worker_and_sees_events_dead_letters_and_batches(
    run_env, worker_factory, tmp_path: Path
) -> None:
    binary = shutil.which("prometheus")
    assert binary, "install Debian's prometheus package (make test does: apt-get install -y prometheus)"
    worker = worker_factory("w1")
    target = worker.base_url.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: churnwatch\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    port = free_port()
    prom = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"),  # noqa: SIM115
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_for_http(f"{base}/-/ready", 60, prom), (tmp_path / "prometheus.log").read_text()[-2000:]
        settings = run_env.settings()
        t0 = datetime(2026, 6, 1, tzinfo=UTC)
        lines = [orjson.dumps({"event_id": f"e{i}", "account_id": f"acct-{i % 20}", "type": "session.started",
                               "user_id": f"u{i % 3}", "occurred_at": (t0 + timedelta(minutes=i)).isoformat()})
                 for i in range(400)]
        lines += [b"{not json", b'{"type": "nps.responded"}']
        produce_lines(settings, lines)

        deadline = time.monotonic() + 60
        processed = 0.0
        while time.monotonic() < deadline:
            result = query(base, 'sum(churnwatch_events_total{outcome="processed"})')
            processed = float(result[0]["value"][1]) if result else 0.0
            if processed >= 400:
                break
            time.sleep(1)
        assert processed == 400
        assert query(base, 'up{job="churnwatch"}')[0]["value"][1] == "1"
        dead = {r["metric"]["reason"]: float(r["value"][1]) for r in query(base, "churnwatch_dead_letters_total")}
        assert dead == {"invalid_json": 1.0, "missing_account": 1.0}
        assert float(query(base, 'sum(churnwatch_batch_duration_seconds_count)')[0]["value"][1]) >= 1
        assert query(base, "churnwatch_build_info")[0]["metric"]["version"]
        # The table holds the accounts once the state flush wrote them (CHURNWATCH_STATE_FLUSH_INTERVAL_S, 10 s), and
        # the lag and table-size timer that reports them runs every 10 s: up to ~20 s after the last event.
        keys: list[dict] = []
        lag: list[dict] = []
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            keys = query(base, 'churnwatch_table_keys{table="account_to_state"}')
            lag = query(base, "max(churnwatch_consumer_lag_messages)")
            if keys and float(keys[0]["value"][1]) == 20 and lag and float(lag[0]["value"][1]) == 0:
                break
            time.sleep(1)
        assert keys and float(keys[0]["value"][1]) == 20
        assert lag and float(lag[0]["value"][1]) == 0
        # The flush that wrote them held the stream for at least one step, each about CHURNWATCH_STATE_FLUSH_STEP_S
        # at most (a step overruns it by one account's write); 20 small states take well under a second.
        held = query(base, 'churnwatch_stream_held_seconds_count{work="flush"}')
        assert held and float(held[0]["value"][1]) >= 1
        held_s = query(base, 'churnwatch_stream_held_seconds_sum{work="flush"}')
        assert 0 < float(held_s[0]["value"][1]) < 1
        print(f"[prometheus] scraped {target}: processed={processed:.0f}, dead letters {dead}, lag 0, 20 accounts")
    finally:
        prom.terminate()
        prom.wait(20)
