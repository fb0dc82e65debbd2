"""`make run`: the whole API on loopback with no cloud account.

Starts the Foundation Models emulator (unless FM_BASE_URL points elsewhere, e.g. the real service with
credentials in the environment); moto server with the queues (each with a DLQ), jobs table and results
bucket, and a trigger runner per queue (unless DOCAPI_ENDPOINT is set); then the local gateway serving
every route. Prints a curl to try.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from local import emulator, gateway


def upstream(emulator_port: int = 0) -> str:
    """Use FM_BASE_URL when set; otherwise start the emulator here and point the handlers at it."""
    if os.environ.get("FM_BASE_URL"):
        return f"{os.environ['FM_BASE_URL']} (credentials from the environment)"
    fm = emulator.EmulatorServer(("127.0.0.1", emulator_port))
    threading.Thread(target=fm.serve_forever, name="fm-emulator", daemon=True).start()
    os.environ["FM_BASE_URL"] = fm.url
    os.environ.setdefault("FM_OPERATION_URL", fm.url)
    os.environ.setdefault("YC_API_KEY", "local-emulator-key")
    os.environ.setdefault("YC_FOLDER_ID", "b1glocalfolder")
    return f"Foundation Models emulator on {fm.url} (outputs are emulated)"


def async_stack(moto_port: int = 0, batch_size: int = 10, cutoff_s: float = 1.0) -> str:
    """Use the configured job store and queues, or start moto server with everything Terraform would create."""
    if os.environ.get("DOCAPI_ENDPOINT"):
        return f"job store {os.environ['DOCAPI_ENDPOINT']} (queues and bucket from the environment; no local triggers)"
    from local import aws, triggers
    from shared.jobs.queue import QueueClient

    _, url = aws.start_moto(moto_port)
    resources = aws.provision(url)
    os.environ.update(resources.env())
    queues = QueueClient(url, aws.REGION, aws.ACCESS_KEY, aws.SECRET_KEY)
    for trigger in triggers.queue_triggers(queues, resources, batch_size, cutoff_s):
        trigger.start()
    interval = float(os.environ.get("POLLER_INTERVAL_S", "10"))
    triggers.TimerTrigger("batch_poller", interval).start()
    return (f"moto server on {url}: queues {', '.join(sorted(resources.queues))}, table jobs, bucket fm-results; "
            f"batch poller every {interval:g} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("LOCAL_PORT", "8080")))
    parser.add_argument("--emulator-port", type=int, default=int(os.environ.get("EMULATOR_PORT", "8765")))
    parser.add_argument("--moto-port", type=int, default=int(os.environ.get("MOTO_PORT", "5000")))
    parser.add_argument("--format", choices=["0.1", "1.0"], default="0.1", help="API Gateway payload format")
    parser.add_argument("--batch-size", type=int, default=10, help="messages per trigger invocation (1-10)")
    parser.add_argument("--batch-cutoff", type=float, default=1.0, help="seconds a trigger waits to fill a batch")
    parser.add_argument("--require-api-key", action="store_true",
                        help="check the caller key (Authorization: Bearer|Api-Key) with the authorizer "
                             "function (keys from CALLER_KEY_SHA256), as deployed")
    args = parser.parse_args()

    print(f"upstream: {upstream(args.emulator_port)}", flush=True)
    print(f"async: {async_stack(args.moto_port, args.batch_size, args.batch_cutoff)}", flush=True)

    server = gateway.GatewayServer(("127.0.0.1", args.port), args.format, authorize=args.require_api_key)
    folder = os.environ.get("YC_FOLDER_ID", "<folder>")
    print(f"API on {server.url}  (payload format {args.format})\n\nTry:\n"
          f"  curl -s {server.url}/foundationModels/v1/completion -H 'Content-Type: application/json' \\\n"
          f"    -d '{{\"modelUri\": \"gpt://{folder}/yandexgpt-lite/latest\", "
          f"\"completionOptions\": {{\"temperature\": 0.3, \"maxTokens\": \"200\"}}, "
          f"\"messages\": [{{\"role\": \"user\", \"text\": \"Hello\"}}]}}'\n\n"
          f"Async: POST the same body to {server.url}/foundationModels/v1/completionAsync, then\n"
          f"  curl -s {server.url}/operations/<id>\n", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
