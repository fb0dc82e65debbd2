"""Shared fixtures: event loading, a clean environment per test, a clock the tests move, and the loopback
stack (FM emulator + local gateways in both payload formats) started once per run. Also a summary hook
that says loudly when the Terraform checks were skipped rather than run.

`make test` runs the suite on pytest-xdist workers (`-n auto --dist loadgroup`): each worker is its own
process with its own session fixtures (emulator, gateways, moto server, all on ephemeral loopback ports, and
moto's backends are per process), so tests only share what a worker runs one after another. The test that
starts two CPU burners (test_job_store.py) and the few tests whose bound is on wall-clock time (arrivals per
second, an answer within an invocation's deadline, a batch finished within poller runs of 1.8 s, the bounded
fuzz run within pytest-timeout's 120 s) are in one `xdist_group("wall-clock")`: one worker runs them one
after another, so the burners never run beside such a bound (as in a serial run)."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from local import emulator as emulator_module  # noqa: E402
from local import gateway as gateway_module  # noqa: E402
from shared import auth, config, logs, runtime  # noqa: E402
from shared.native import services  # noqa: E402
from tests.clock import ManualClock  # noqa: E402

EVENTS = ROOT / "events"
API_KEY = "AQVNlocal-test-api-key-0123456789abcdef"
FOLDER = "b1gtestfolder"


def load_event(name: str) -> dict[str, Any]:
    """An event from events/ by file name (with or without .json)."""
    path = EVENTS / (name if name.endswith(".json") else f"{name}.json")
    return json.loads(path.read_text(encoding="utf-8"))


def event_names(prefix: str = "") -> list[str]:
    return sorted(p.stem for p in EVENTS.glob(f"{prefix}*.json"))


def reset_caches() -> None:
    from shared.jobs import batches, queue, store

    config.reset_settings()
    auth.reset_credentials()
    runtime.reset_client()
    services.reset_pacers()
    store.reset_job_store()
    queue.reset_queue_client()
    batches.reset_windows()


_ENV_PREFIXES = ("YC_", "FM_", "LOG_")
_ENV_NAMES = set(config.ENV_NAMES.values())


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts with none of our variables set and no cached settings or credentials."""
    import os

    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES) or name in _ENV_NAMES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("YC_METADATA_ADDR", "127.0.0.1:9")  # never probe the real metadata address
    reset_caches()
    yield
    reset_caches()


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[emulator_module.EmulatorServer]:
    server = emulator_module.start()
    yield server
    server.shutdown()


@pytest.fixture
def emulator(emulator_server: emulator_module.EmulatorServer) -> Iterator[Emulator]:
    controller = Emulator(emulator_server.url)
    controller.post("/_emulator/reset", {})
    yield controller
    controller.post("/_emulator/reset", {})


class Emulator:
    """Drives the emulator's /_emulator control plane over HTTP."""

    def __init__(self, url: str) -> None:
        import requests

        self.url = url
        self.http = requests.Session()

    def post(self, path: str, body: dict[str, Any]) -> None:
        self.http.post(self.url + path, json=body, timeout=5).raise_for_status()

    def fault(self, **fault: Any) -> None:
        self.post("/_emulator/faults", fault)

    def configure(self, **options: Any) -> None:
        self.post("/_emulator/config", options)

    def max_in_flight(self) -> int:
        return int(self.http.get(self.url + "/_emulator/calls", timeout=5).json()["maxInFlight"])

    def calls(self, path_suffix: str = "") -> list[dict[str, Any]]:
        calls = self.http.get(self.url + "/_emulator/calls", timeout=5).json()["calls"]
        return [c for c in calls if c["path"].endswith(path_suffix)]


@pytest.fixture
def stack_env(monkeypatch: pytest.MonkeyPatch, emulator: Emulator) -> Emulator:
    """Point the handlers at the emulator with an API key, fast retries and no pacing delays."""
    monkeypatch.setenv("FM_BASE_URL", emulator.url)
    monkeypatch.setenv("FM_OPERATION_URL", emulator.url)
    monkeypatch.setenv("YC_API_KEY", API_KEY)
    monkeypatch.setenv("YC_FOLDER_ID", FOLDER)
    monkeypatch.setenv("FM_RETRY_BASE_S", "0.01")
    monkeypatch.setenv("FM_EMBEDDING_RPS", "10000")
    monkeypatch.setenv("FM_CLASSIFICATION_RPS", "10000")
    reset_caches()
    return emulator


@pytest.fixture(scope="session")
def gateways() -> Iterator[dict[str, gateway_module.GatewayServer]]:
    servers = {fmt: gateway_module.start(payload_format=fmt) for fmt in ("0.1", "1.0")}
    yield servers
    for server in servers.values():
        server.shutdown()


@pytest.fixture(scope="session")
def authorizing_gateway() -> Iterator[gateway_module.GatewayServer]:
    """The local gateway with the authorizer in front (payload format 0.1), started once per run. It keeps no
    state between requests: the authorizer reads CALLER_KEY_SHA256 and FM_ADMIN_CALLER from each test's
    environment."""
    server = gateway_module.start(authorize=True)
    yield server
    server.shutdown()


@pytest.fixture(params=["0.1", "1.0"])
def api(request: pytest.FixtureRequest, gateways: dict[str, gateway_module.GatewayServer], stack_env: Emulator) -> Api:
    """An HTTP client for the local gateway (both payload formats), backed by the emulator."""
    return Api(gateways[request.param].url, request.param)


@pytest.fixture
def api_v01(gateways: dict[str, gateway_module.GatewayServer], stack_env: Emulator) -> Api:
    """The gateway in payload format 0.1 only, for tests too slow to run in both formats."""
    return Api(gateways["0.1"].url, "0.1")


class Api:
    def __init__(self, url: str, payload_format: str) -> None:
        import requests

        self.url = url
        self.payload_format = payload_format
        self.http = requests.Session()

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        if body is not None:
            kwargs["json"] = body
        return self.http.post(self.url + path, timeout=30, **kwargs)


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Everything the project logger writes during the test, as text."""
    stream = io.StringIO()
    logs.configure(level="DEBUG", stream=stream)
    yield stream
    import sys as _sys

    logs.configure(level="INFO", stream=_sys.stdout)


def race(count: int, action: Any, timeout: float | None = None) -> list[Any]:
    """`action(i)` for i in range(count), each in its own thread, all released together by a barrier (which gives
    up after `timeout` seconds when set); the results, by i."""
    import threading

    results: list[Any] = [None] * count
    barrier = threading.Barrier(count, timeout=timeout)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = action(index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def logged(log: io.StringIO, message: str) -> list[dict[str, Any]]:
    """The JSON lines `log` (the log_output fixture's stream) holds with this message."""
    return [line for line in map(json.loads, log.getvalue().splitlines()) if line.get("msg") == message]


def counting(aws: Aws) -> list[str]:
    """What reaches the store from now on: one entry per request (DynamoDB's target, or S3's method and path)."""
    seen: list[str] = []

    def middleware(app: Any) -> Any:
        def counted(environ: dict[str, Any], start_response: Any) -> Any:
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            seen.append(target.split(".")[-1] if target else f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}")
            return app(environ, start_response)

        return counted

    aws.wrap(middleware)
    return seen


@contextlib.contextmanager
def in_zone(zone: str) -> Iterator[None]:
    """The process's local time zone set to `zone` (a POSIX zone such as "EAST-10", ten hours east of UTC: no time
    zone database needed) for the block. The cloud runs in UTC; a laptop running `make run` may not."""
    import os
    import time

    before = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


class FakeContext:
    """The Cloud Functions context object, with a settable remaining time and token."""

    def __init__(self, remaining_ms: int = 60_000, token: dict[str, Any] | None = None,
                 request_id: str = "req-test") -> None:
        self.remaining_ms = remaining_ms
        self.token = token
        self.request_id = request_id
        self.function_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    from local.aws import start_moto

    server, url = start_moto()
    yield url
    server.shutdown()


class Jobs:
    """The async stack for one test: fresh queues, table and bucket in moto, plus trigger runners."""

    def __init__(self, resources: Any) -> None:
        from local.aws import ACCESS_KEY, REGION, SECRET_KEY
        from local.triggers import queue_triggers
        from shared.jobs.queue import QueueClient

        self.resources = resources
        self.queues = QueueClient(resources.endpoint, REGION, ACCESS_KEY, SECRET_KEY)
        self.triggers = {t.function + ("-dlq" if t.queue_url.endswith("-dlq") else ""): t
                         for t in queue_triggers(self.queues, resources, retry_visibility_s=0)}

    def drain(self, max_rounds: int = 200) -> int:
        """Run every trigger until all queues are empty; the number of handler invocations."""
        invocations = 0
        for _ in range(max_rounds):
            handled = sum(trigger.poll_once() for trigger in self.triggers.values())
            if not handled:
                return invocations
            invocations += 1
        raise AssertionError("queues did not drain")


@pytest.fixture
def jobs(moto_server: str, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> Jobs:
    from local.aws import renew

    resources = renew(moto_server, max_receive_count=3)  # as provisioned: what the last test changed is undone
    for name, value in resources.env().items():
        monkeypatch.setenv(name, value)
    reset_caches()
    return Jobs(resources)


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch, jobs: Jobs) -> Emulator:
    """Quotas high enough for big batches in seconds; async operations finish at once."""
    import os

    monkeypatch.setenv("FM_ASYNC_START_RPS", "5000")
    monkeypatch.setenv("FM_OPERATION_GET_RPS", "5000")
    reset_caches()
    emulator = Emulator(os.environ["FM_BASE_URL"])
    emulator.configure(asyncDelayMs=0)
    return emulator


# -- the job store's two stand-ins: moto server on loopback, and the same app in process (the fast layer) --

class Aws:
    """One stand-in for the YDB Document API and Object Storage, reset and provisioned (table and bucket) for
    one test, its variables set. `layer` is "loopback" (start_moto's server) or "in-process" (InProcessMoto:
    the same WSGI app, reached without a socket; see local/aws.py)."""

    def __init__(self, layer: str, holder: Any, url: str) -> None:
        self.layer, self.url = layer, url
        self.resources: Any = None  # what is provisioned (local.aws.Resources): with aws_jobs, the queues too
        self.queues: Any = None  # with aws_jobs: a QueueClient that reaches them
        self.session: Any = None  # a requests Session that reaches the stand-in
        self._holder = holder  # what serves the app: the werkzeug server or the InProcessMoto (both have .app)
        self._base = holder.app

    def refuse_next(self, operation: str, times: int) -> None:
        """Answer the next `times` calls of a Document API write `operation` (PutItem, UpdateItem, DeleteItem,
        TransactWriteItems) as a write conflict, as the Document API does (local.aws.ConflictingWrites)."""
        from local.aws import ConflictingWrites

        if not isinstance(self._holder.app, ConflictingWrites):
            self._holder.app = ConflictingWrites(self._base)
        self._holder.app.refuse_next[operation] = times

    def wrap(self, middleware: Any) -> Any:
        """Put a WSGI middleware (a callable taking the app) in front of the stand-in for this test; the wrapped app
        (what the middleware returned), so a test can read what it counted."""
        self._holder.app = middleware(self._holder.app)
        return self._holder.app

    def restore(self) -> None:
        self._holder.app = self._base


@pytest.fixture(scope="session")
def in_process_moto() -> Iterator[Any]:
    from local.aws import InProcessMoto

    yield InProcessMoto.shared()


@pytest.fixture(scope="session")
def loopback_moto() -> Iterator[Any]:
    from local.aws import start_moto

    server, url = start_moto()
    server.url = url
    yield server
    server.shutdown()


@pytest.fixture(params=["in-process"])
def aws(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """The job store's stand-in for one test: in process by default (milliseconds a call, no server); a module
    parametrizes it indirectly with "loopback" to run the same tests against moto server over a socket. Fresh
    as provisioned, by local.aws.renew: what the last test changed is undone (with the queues too if the test
    asks for `aws_jobs`)."""
    import requests

    from local.aws import renew

    holder = request.getfixturevalue("loopback_moto" if request.param == "loopback" else "in_process_moto")
    session = requests.Session()
    if request.param == "in-process":
        session.mount(holder.url, holder.requests_adapter())
    queues = "aws_jobs" in request.fixturenames
    resources = renew(holder.url, max_receive_count=3 if queues else 5, queues=queues, session=session)
    for name, value in resources.env().items():
        if queues or name != "YMQ_ENDPOINT":
            monkeypatch.setenv(name, value)
    reset_caches()
    stand_in = Aws(request.param, holder, holder.url)
    stand_in.resources, stand_in.session = resources, session
    yield stand_in
    stand_in.restore()


@pytest.fixture
def aws_jobs(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Aws:
    """`aws` with the job queues too (each with its dead-letter queue; at most 3 receives), their variables set;
    `aws.queues` is a QueueClient that reaches them (in process: through InProcessMoto.requests_adapter, which
    the instance's queue client uses as well)."""
    from local.aws import ACCESS_KEY, REGION, SECRET_KEY
    from shared.jobs import queue

    aws.queues = queue.QueueClient(aws.url, REGION, ACCESS_KEY, SECRET_KEY, session=aws.session)
    monkeypatch.setattr(queue, "_client", aws.queues)  # what queue_client() hands the code under test
    return aws


@pytest.fixture
def aws_fast(stack_env: Emulator, monkeypatch: pytest.MonkeyPatch, aws_jobs: Aws, clock: ManualClock) -> Aws:
    """`aws_jobs` as `fast` is `jobs`: the emulator's async operations done at once, the start and poll quotas high;
    on the test's clock."""
    stack_env.configure(asyncDelayMs=0)
    configure(aws_jobs, monkeypatch, FM_ASYNC_START_RPS="5000", FM_OPERATION_GET_RPS="5000")
    return aws_jobs


def configure(aws: Aws, monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    """Set these variables as an instance reads them at start: the caches dropped, and the code under test's queue
    client pointed at `aws_jobs`'s queues again (reset_caches drops it)."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    reset_caches()
    monkeypatch.setattr("shared.jobs.queue._client", aws.queues)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits of botocore's waiters (DescribeTable until ACTIVE), recorded instead of slept."""
    import types

    import botocore.waiter

    recorded: list[float] = []
    monkeypatch.setattr(botocore.waiter, "time", types.SimpleNamespace(sleep=recorded.append))
    return recorded


@pytest.fixture
def clock() -> Iterator[ManualClock]:
    """A clock the test moves (tests/clock.py): sleeps return at once and are recorded; advance() moves time."""
    from shared import clock as shared_clock

    manual = ManualClock()
    previous = shared_clock.use(manual)
    yield manual
    shared_clock.use(previous)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep an `xdist_group` on one worker. pytest-xdist 3.8 marks a grouped test by appending `@<group>` to
    `item._nodeid`, which pytest 9.2 no longer reads (`Node.nodeid` is built from `item._id`), so
    `--dist loadgroup` would scatter the group; this appends it where pytest reads it. Only in a worker of a
    `--dist loadgroup` run (xdist sets `config.option.loadgroup` there), and never twice."""
    if not getattr(config.option, "loadgroup", False):
        return
    from _pytest.nodeid import NodeId

    for item in items:
        groups = sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                         for mark in item.iter_markers("xdist_group")})
        if groups and "@" not in item.nodeid:
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(groups)}")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """A skipped Terraform check is not a passed one: say so at the end of the run, where it is seen."""
    skipped = [report for report in terminalreporter.stats.get("skipped", [])
               if report.nodeid.startswith("tests/terraform/")]
    if not skipped:
        return
    terminalreporter.write_sep("!", f"{len(skipped)} TERRAFORM CHECK(S) SKIPPED, NOT PASSED", red=True, bold=True)
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        terminalreporter.write_line(f"  SKIPPED {report.nodeid}: {reason.removeprefix('Skipped: ')}", red=True)
    if any("terraform-yandex-schema.json" in str(report.longrepr) for report in skipped):
        terminalreporter.write_line("  The provider-schema check needs ../shared/reference/terraform-yandex-schema.json "
                                    "beside the repository; without it no resource was checked against the provider.",
                                    red=True, bold=True)
