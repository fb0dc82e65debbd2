"""Settings from the environment, envelope parsing, and the route table."""

from __future__ import annotations

import base64
import json

import pytest
from pydantic import BaseModel

from local import functions
from shared import errors, events, routes, runtime
from shared.config import ENV_NAMES, Settings
from shared.errors import ConfigError
from tests.conftest import event_names, load_event


def test_settings_from_env_with_types_and_defaults() -> None:
    config = Settings.from_env({"FM_TIMEOUT_S": "12.5", "FM_ALLOWED_MODELS": " a, b ,,c", "FM_DATA_LOGGING": "true",
                                "YC_API_KEY": "secret", "FM_BASE_URL": "http://10.0.0.5:8080/"})
    assert config.timeout_s == 12.5
    assert config.allowed_models == ("a", "b", "c")
    assert config.data_logging is True
    assert config.base_url == "http://10.0.0.5:8080"
    assert "secret" not in repr(config)
    assert Settings.from_env({}).embedding_rps == 10 and Settings.from_env({}).classification_rps == 1


def test_explicit_argument_beats_environment() -> None:
    assert Settings.from_env({"FM_TIMEOUT_S": "5"}, timeout_s=7).timeout_s == 7


@pytest.mark.parametrize("name,value", [("FM_TIMEOUT_S", "soon"), ("FM_MAX_RETRIES", "-1"), ("LOG_LEVEL", "LOUD"),
                                        ("FM_BASE_URL", "llm.example"), ("FM_EMBEDDING_RPS", "0")])
def test_bad_setting_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_every_setting_has_a_public_name() -> None:
    assert set(ENV_NAMES) == set(Settings.model_fields)


@pytest.mark.parametrize("name", event_names("http-"))
def test_every_http_sample_event_parses(name: str) -> None:
    event = load_event(name)
    assert events.kind(event) == "http"
    request = events.parse_http(event)
    assert request.method == "POST"
    assert isinstance(request.json(10_000_000), dict)


def test_v01_path_params_and_query_in_url() -> None:
    event = {"httpMethod": "POST", "url": "/v1/classify/small?dry_run=1", "path": "/v1/classify/{model}",
             "pathParams": {"model": "small"}, "headers": {"X-Client-Request-Id": "abc"}, "body": "{}"}
    request = events.parse_http(event)
    assert request.envelope == "0.1"
    assert request.path == "/v1/classify/small"
    assert request.path_params == {"model": "small"}
    assert request.query == {"dry_run": "1"}
    assert request.header("x-client-request-id") == "abc"


def test_v10_uses_path_and_path_parameters() -> None:
    event = {"version": "1.0", "httpMethod": "GET", "resource": "/operations/{id}", "path": "/operations/abc",
             "pathParameters": {"id": "abc"}, "queryStringParameters": {"a": "b"},
             "multiValueHeaders": {"X-Thing": ["one", "two"]}, "body": None}
    request = events.parse_http(event)
    assert request.envelope == "1.0" and request.path == "/operations/abc" and request.path_params == {"id": "abc"}
    assert request.header("X-THING") == "two" and request.body == b""


def test_direct_invocation_and_base64() -> None:
    body = json.dumps({"a": 1}).encode()
    event = {"httpMethod": "POST", "url": "", "path": "", "body": base64.b64encode(body).decode(), "isBase64Encoded": True}
    request = events.parse_http(event)
    assert request.envelope == "direct" and request.json(100) == {"a": 1}


def test_event_kinds() -> None:
    queue = {"messages": [{"event_metadata": {"event_type": "yandex.cloud.events.messagequeue.QueueMessage"}}]}
    timer = {"messages": [{"event_metadata": {"event_type": "yandex.cloud.events.serverless.triggers.TimerMessage"}}]}
    assert events.kind(queue) == "queue" and events.kind(timer) == "timer" and events.kind({"x": 1}) == "unknown"


def test_route_resolution() -> None:
    route, params = routes.resolve("POST", "/foundationModels/v1/completion?x=1")
    assert route.function == "completion" and route.operation == "completion" and params == {}
    with pytest.raises(errors.NotFoundError):
        routes.resolve("POST", "/nope")
    with pytest.raises(errors.MethodNotAllowedError):
        routes.resolve("DELETE", "/foundationModels/v1/textEmbedding")
    templated = routes.Route("GET", "/operations/{id}", "x", "get", None, "R", "s")
    assert templated.match("/operations/abc") == {"id": "abc"} and templated.match("/operations/a/b") is None


def test_every_route_has_a_handler_an_operation_and_models() -> None:
    for route in routes.ROUTES:
        handler = functions.load(route.function)
        operations = handler.__globals__["OPERATIONS"]
        assert route.operation in operations, route
        assert callable(runtime.resolve_operation(operations[route.operation])), route
        assert route.request is None or issubclass(routes.model(route), BaseModel)  # "Class" or "module:Class"
        assert issubclass(routes.model(route, "response"), BaseModel)
    assert set(routes.functions()) <= set(functions.names())
