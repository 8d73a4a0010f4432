"""The load test, run briefly against the real app: no errors, the same seeded answers, a clear "busy"."""

from __future__ import annotations

import pytest

from emojilm import loadtest

QUEUE_BOUND = 32  # app.py: demo.queue(max_size=32), one request running at a time on a CPU


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loadtest")
    process, url = loadtest.start_app(tmp / "app.log", {"EMOJILM_CACHE": str(tmp / "cache"), "HF_HOME": str(tmp)})
    yield url
    loadtest.stop_app(process)


def run(url: str, users: int, requests: int) -> tuple:
    settings = loadtest.Settings(timeout=120)  # a generous hang bound, not a speed target
    texts = loadtest.plan(users, requests)
    alone = loadtest.answers_alone(url, texts, settings)
    table, wall_s = loadtest.load(url, texts, settings, alone)
    return table, loadtest.summarize(table, wall_s, settings, users, requests)


def test_concurrent_users_get_their_answers_unchanged(url):
    table, summary = run(url, users=3, requests=3)
    assert summary["errors"] == 0, table[table["status"] != "ok"]["message"].tolist()
    assert summary["ok"] == 9
    assert table["same_as_alone"].all(), table[["text", "answer"]]
    assert len(set(table["text"])) > 1  # the users do not all ask the same thing


def test_users_past_the_queue_bound_are_told_it_is_busy(url):
    users = QUEUE_BOUND + 16
    table, summary = run(url, users=users, requests=1)
    busy = table[table["status"] == loadtest.BUSY]
    assert summary["errors"] == 0, table[table["status"] == "error"]["message"].tolist()  # no timeouts either
    assert 0 < len(busy) <= users - QUEUE_BOUND
    assert set(busy["message"]) == {"Queue is full! Please try again."}
    assert table["same_as_alone"].dropna().all()


def test_the_command_prints_its_table(url, capsys):
    assert loadtest.main(["--url", url, "--users", "2", "--requests", "1"]) == 0
    out = capsys.readouterr().out
    for figure in ("throughput (requests/s)", "latency p95 (s)", "errors", "same answer as alone"):
        assert figure in out
