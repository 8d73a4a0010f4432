"""Load test: N concurrent gradio_client users send M requests each to the running Space.

    python -m emojilm.loadtest [--url URL] [--users 8] [--requests 10] [--endpoint translate]

Without --url it starts `python app.py` on loopback with the bundled model only and stops it
afterwards. Every request is sampled (temperature 0.8) with one fixed seed, so its answer must
equal the same request made alone before the load: sharing the server must not change answers.

Outcomes: "ok"; "busy" when the app's queue is full (users past its bound get gradio_client's
QueueError, "Queue is full! Please try again.", without waiting for a turn); "error" for anything else, a
request that hangs past --timeout included. Prints a table; exits with 1 on any error or
changed answer.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from gradio_client import Client
from gradio_client.utils import QueueError

from emojilm.space import EXAMPLES, keep_loopback_off_proxies

APP = Path(__file__).resolve().parents[1] / "app.py"
START_TIMEOUT_S = 120
BUSY = "busy"


@dataclass
class Outcome:
    user: int
    text: str
    status: str  # "ok", BUSY or "error"
    seconds: float
    answer: str | None = None
    message: str = ""


@dataclass
class Settings:
    endpoint: str = "translate"
    temperature: float = 0.8
    top_p: float = 0.95
    loops: int | None = None  # the model's trained count
    max_new_tokens: int = 64
    seed: int = 1234
    timeout: float = 300.0  # a request slower than this counts as an error (a hang), not a result

    def client(self, url: str) -> Client:
        # httpx's 5 s default would fail a user whom a saturated server answers slowly: wait as for a result.
        return Client(url, verbose=False, httpx_kwargs={"timeout": self.timeout})

    def ask(self, client: Client, text: str) -> str:
        args = (text, self.temperature, self.top_p, self.loops, self.max_new_tokens, self.seed)
        result = client.submit(*args, api_name=f"/{self.endpoint}").result(timeout=self.timeout)
        return result[0] if self.endpoint == "translate" else result["output"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(
    log: Path, env: dict[str, str] | None = None, app_args: tuple[str, ...] = ("--repo", "")
) -> tuple[subprocess.Popen, str]:
    """`python app.py` on a free loopback port (by default serving only the bundled model); returns (process, url)."""
    keep_loopback_off_proxies()  # for this process's own checks and clients
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = os.environ | {"HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"} | (env or {})
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, str(APP), *app_args, "--port", str(port)],
            cwd=APP.parent, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with code {process.returncode}; its log:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"app.py did not answer at {url} within {START_TIMEOUT_S} s; its log:\n{log.read_text()}")


def stop_app(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MB (Linux; None elsewhere)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return kb / 1024


def one_user(user: int, url: str, texts: list[str], settings: Settings, start: threading.Barrier) -> list[Outcome]:
    try:
        client, failure = settings.client(url), ""
    except Exception as err:  # an overloaded server may not even hand out its config
        client, failure = None, f"connecting: {type(err).__name__}: {err}"
    start.wait()  # every user starts together, so the queue really fills
    outcomes = []
    for text in texts:
        began = time.perf_counter()
        answer, status, message = None, "error", failure
        if client is not None:
            try:
                answer, status, message = settings.ask(client, text), "ok", ""
            except QueueError as err:
                status, message = BUSY, str(err)
            except Exception as err:  # counted, not raised: a hang (TimeoutError), an HTTP timeout, an app error
                message = f"{type(err).__name__}: {err}"
        outcomes.append(Outcome(user, text, status, time.perf_counter() - began, answer, message))
    if client is not None:
        client.close()
    return outcomes


def plan(users: int, requests: int) -> list[list[str]]:
    """The texts each user sends: the app's examples, each user starting at a different one."""
    return [[EXAMPLES[(u + i) % len(EXAMPLES)] for i in range(requests)] for u in range(users)]


def answers_alone(url: str, texts: list[list[str]], settings: Settings) -> dict[str, str]:
    """Each distinct text asked once, with nobody else on the server (this also warms it up)."""
    client = settings.client(url)
    try:
        return {text: settings.ask(client, text) for text in sorted({t for ts in texts for t in ts})}
    finally:
        client.close()


def load(url: str, texts: list[list[str]], settings: Settings, alone: dict[str, str]) -> tuple[pd.DataFrame, float]:
    """All users at once; one row per request, and the wall time of the whole load."""
    start = threading.Barrier(len(texts) + 1, timeout=START_TIMEOUT_S)  # a user that cannot connect breaks it
    with ThreadPoolExecutor(len(texts)) as pool:
        futures = [pool.submit(one_user, u, url, ts, settings, start) for u, ts in enumerate(texts)]
        start.wait()
        began = time.perf_counter()
        outcomes = [outcome for future in futures for outcome in future.result()]
        wall_s = time.perf_counter() - began
    table = pd.DataFrame([vars(o) for o in outcomes])
    table["same_as_alone"] = [
        answer == alone[text] if status == "ok" else None
        for text, status, answer in table[["text", "status", "answer"]].itertuples(index=False)
    ]
    return table, wall_s


def summarize(table: pd.DataFrame, wall_s: float, settings: Settings, users: int, requests: int) -> pd.Series:
    ok, busy = table[table["status"] == "ok"], table[table["status"] == BUSY]
    latency = ok["seconds"]
    return pd.Series({
        "endpoint": f"/{settings.endpoint}",
        "users × requests": f"{users} × {requests}",
        "ok": len(ok),
        "busy (queue full)": len(busy),
        "errors": int((table["status"] == "error").sum()),
        "same answer as alone": f"{int(ok['same_as_alone'].sum())} / {len(ok)}",
        "wall time (s)": round(wall_s, 2),
        "throughput (requests/s)": round(len(ok) / wall_s, 2),
        "answer bytes/s (all users)": round(sum(len(a.encode()) for a in ok["answer"]) / wall_s, 2),
        "latency p50 (s)": round(latency.quantile(0.5), 3) if len(ok) else None,
        "latency p95 (s)": round(latency.quantile(0.95), 3) if len(ok) else None,
        "latency max (s)": round(latency.max(), 3) if len(ok) else None,
        "busy answered within (s)": round(busy["seconds"].max(), 3) if len(busy) else None,
    })  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running app (default: start app.py on loopback with the bundled model)")
    parser.add_argument("--users", type=int, default=8, help="concurrent gradio_client users")
    parser.add_argument("--requests", type=int, default=10, help="requests per user")
    parser.add_argument("--endpoint", choices=["translate", "trace"], default="translate")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a request counts as hung")
    args = parser.parse_args(argv)
    settings = Settings(args.endpoint, max_new_tokens=args.max_new_tokens, seed=args.seed, timeout=args.timeout)

    with tempfile.TemporaryDirectory() as tmp:
        process, url = start_app(Path(tmp) / "app.log") if args.url is None else (None, args.url)
        try:
            texts = plan(args.users, args.requests)
            alone = answers_alone(url, texts, settings)
            rss_before = rss_mb(process.pid) if process else None
            table, wall_s = load(url, texts, settings, alone)
            summary = summarize(table, wall_s, settings, args.users, args.requests)
            if process:
                summary["server RSS before → after (MB)"] = f"{rss_before:.0f} → {rss_mb(process.pid):.0f}"
        finally:
            if process:
                stop_app(process)

    print(summary.to_frame(url).to_string())
    for status in (BUSY, "error"):
        for message, count in table.loc[table["status"] == status, "message"].value_counts().items():
            print(f"{status} ×{count}: {message}")
    changed = table[table["same_as_alone"] == False]  # noqa: E712 (None means "not answered")
    for row in changed.itertuples():
        print(f"changed under load: {row.text!r} -> {row.answer!r}")
    return 1 if summary["errors"] or len(changed) else 0


if __name__ == "__main__":
    sys.exit(main())
