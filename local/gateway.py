"""A local API Gateway: HTTP on loopback -> the same event API Gateway sends -> the handler, in-process.

Routes come from shared.routes (the table the OpenAPI spec is generated from). Events follow payload
format 0.1 by default (`url` real path, `path` template, `pathParams`), or 1.0 with --format 1.0.
JSON bodies arrive as text, anything else base64-encoded, as the platform does. A method the table
lacks on a path it serves (TRACE, PATCH, OPTIONS, HEAD, ...) is a JSON 405 with `Allow`, in the path's
dialect, as the spec's `x-yc-apigateway-any-method` answers it when deployed. With authorize=True the
caller key is checked as the spec's one security scheme says: `Authorization` (Bearer / Api-Key),
decided by the authorizer function.
"""

from __future__ import annotations

import argparse
import base64
import json
import threading
import time
import uuid
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from local import functions
from local.context import LocalContext
from shared import clock, errors, responses, routes

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "expect"}


def build_event(method: str, raw_path: str, headers: dict[str, str], body: bytes, route: routes.Route,
                params: dict[str, str], payload_format: str = "0.1", source_ip: str = "127.0.0.1") -> dict[str, Any]:
    """The event API Gateway would send the function for this request."""
    split = urlsplit(raw_path)
    multi_query = parse_qs(split.query, keep_blank_values=True)
    query = {k: v[-1] for k, v in multi_query.items()}
    content_type = headers.get("Content-Type", headers.get("content-type", ""))
    is_text = not body or "json" in content_type or content_type.startswith("text/")
    now = time.time()
    request_id = str(uuid.uuid4())
    context = {
        "identity": {"sourceIp": source_ip, "userAgent": headers.get("User-Agent", "")},
        "httpMethod": method, "requestId": request_id,
        "requestTime": formatdate(now, usegmt=True), "requestTimeEpoch": int(now),
        "apiGateway": {"operationContext": {"operation": route.operation}},
    }
    event: dict[str, Any] = {
        "httpMethod": method,
        "headers": dict(headers),
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "requestContext": context,
        "body": body.decode("utf-8", errors="replace") if is_text else base64.b64encode(body).decode(),
        "isBase64Encoded": not is_text,
    }
    if payload_format == "1.0":
        event.update(version="1.0", resource=route.path, path=split.path, pathParameters=params,
                     parameters={**params, **query}, multiValueParameters={**{k: [v] for k, v in params.items()},
                                                                           **multi_query},
                     operationId=route.operation)
    else:
        event.update(url=raw_path, path=route.path, pathParams=params, params={**params, **query},
                     multiValueParams={**{k: [v] for k, v in params.items()}, **multi_query})
    return event


class GatewayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in separate writes; avoid the 40 ms delayed-ACK stall
    server: GatewayServer

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def __getattr__(self, name: str) -> Any:
        # http.server dispatches a request to do_<METHOD>: every method reaches _handle, which answers
        # the ones the route table lacks with a 405 (the stdlib default is a 501 HTML page)
        if name.startswith("do_") and name[3:].isalpha() and name[3:].isupper():
            return lambda: self._handle(name[3:])
        raise AttributeError(name)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if length > self.server.max_body_bytes:  # API Gateway rejects these before any function runs
            return self._error(method, errors.PayloadTooLargeError("request is larger than the gateway's limit"))
        try:
            route, params = routes.resolve(method, self.path)
        except errors.ApiError as err:
            allowed = getattr(err, "allow", ())
            return self._error(method, err, {"Allow": ", ".join(allowed)} if allowed else {})
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        event = build_event(method, self.path, headers, body, route, params, self.server.payload_format,
                            self.client_address[0])
        if self.server.authorize:
            denied = self._authorize(method, route, params, headers, event)
            if denied:
                return self._send(denied, {"Content-Type": "application/json"},
                                  json.dumps({"message": {401: "Unauthorized", 403: "Forbidden"}.get(denied, "Internal Server Error")}).encode(),
                                  method)
        handler = functions.load(route.function)
        result = handler(event, LocalContext(route.function, timeout_s=self.server.timeout_s,
                                             request_id=event["requestContext"]["requestId"]))
        if not isinstance(result, dict) or "statusCode" not in result:
            return self._send(502, {"Content-Type": "application/json"},
                              b'{"errorMessage":"Malformed serverless function response","errorType":"ProxyIntegrationError"}')
        data = result.get("body") or ""
        payload = base64.b64decode(data) if result.get("isBase64Encoded") else str(data).encode()
        self._send(int(result["statusCode"]), result.get("headers") or {}, payload, method)

    def _error(self, method: str, err: errors.ApiError, headers: dict[str, str] | None = None) -> None:
        """An error the gateway answers itself, in the dialect of the path (native or OpenAI shape)."""
        answer = responses.error(err, {}, routes.dialect_of(urlsplit(self.path).path))
        self._send(answer["statusCode"], {**answer["headers"], **(headers or {})}, answer["body"].encode(), method)

    def _authorize(self, method: str, route: routes.Route, params: dict[str, str], headers: dict[str, str],
                   event: dict[str, Any]) -> int | None:
        """The security scheme with its function authorizer, as the generated spec declares it (an apiKey
        in `Authorization`): no such header -> 401; isAuthorized false -> 403; otherwise the authorizer's
        context reaches the backend."""
        authorization = next((v.strip() for k, v in headers.items() if k.lower() == "authorization"), "")
        if not authorization:
            return 401
        cache_key = (urlsplit(self.path).path, method, authorization)
        cached = self.server.verdicts.get(cache_key)
        if cached is not None and cached[0] > clock.now():
            verdict = cached[1]
            if not verdict["isAuthorized"]:
                return 403
            event["requestContext"]["authorizer"] = verdict.get("context") or {}
            return None
        request = {"resource": route.path, "path": urlsplit(self.path).path, "httpMethod": method, "headers": headers,
                   "queryStringParameters": event["queryStringParameters"], "pathParameters": params,
                   "requestContext": {k: v for k, v in event["requestContext"].items() if k != "apiGateway"},
                   "cookies": {}}
        try:
            verdict = functions.load("authorizer")(request, LocalContext("authorizer", timeout_s=10))
        except Exception:  # a failed authorizer invocation: the gateway answers 500 (reference §2.3)
            return 500
        if not isinstance(verdict, dict) or "isAuthorized" not in verdict:
            return 500
        if self.server.verdict_ttl_s:
            self.server.verdicts[cache_key] = (clock.now() + self.server.verdict_ttl_s, verdict)
        if not verdict["isAuthorized"]:
            return 403
        event["requestContext"]["authorizer"] = verdict.get("context") or {}
        return None

    def _send(self, status: int, headers: dict[str, str], payload: bytes, method: str = "GET") -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if method != "HEAD":  # a HEAD answer has the headers of the full one and no body (RFC 9110 §9.3.2)
            self.wfile.write(payload)


class GatewayServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], payload_format: str = "0.1", timeout_s: float = 300.0,
                 max_body_bytes: int = 2_500_000, verbose: bool = False, authorize: bool = False,
                 verdict_ttl_s: float = 0.0) -> None:
        super().__init__(address, GatewayHandler)
        self.authorize = authorize  # run the authorizer on the caller key headers, as the deployed gateway does
        # API Gateway caches a verdict under path + method + the Authorization header for the spec's
        # authorizer_result_ttl_in_seconds (reference §2.3); 0: no cache (every request asks the authorizer)
        self.verdict_ttl_s = verdict_ttl_s
        self.verdicts: dict[tuple[str, str, str], tuple[float, dict[str, Any]]] = {}
        self.payload_format = payload_format
        self.timeout_s = timeout_s
        self.max_body_bytes = max_body_bytes
        self.verbose = verbose

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def start(port: int = 0, payload_format: str = "0.1", host: str = "127.0.0.1", authorize: bool = False,
          verdict_ttl_s: float = 0.0) -> GatewayServer:
    server = GatewayServer((host, port), payload_format, authorize=authorize, verdict_ttl_s=verdict_ttl_s)
    threading.Thread(target=server.serve_forever, name="local-gateway", daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--format", choices=["0.1", "1.0"], default="0.1")
    args = parser.parse_args()
    server = GatewayServer((args.host, args.port), args.format)
    print(f"local gateway on {server.url}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
