"""`make run`: the whole API on loopback with no cloud account.

Starts the Foundation Models emulator (unless FM_BASE_URL points elsewhere, e.g. the real service with
credentials in the environment), then the local gateway serving every route, and prints a curl to try.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("LOCAL_PORT", "8080")))
    parser.add_argument("--emulator-port", type=int, default=int(os.environ.get("EMULATOR_PORT", "8765")))
    parser.add_argument("--format", choices=["0.1", "1.0"], default="0.1", help="API Gateway payload format")
    args = parser.parse_args()

    print(f"upstream: {upstream(args.emulator_port)}", flush=True)

    server = gateway.GatewayServer(("127.0.0.1", args.port), args.format)
    folder = os.environ.get("YC_FOLDER_ID", "<folder>")
    print(f"API on {server.url}  (payload format {args.format})\n\nTry:\n"
          f"  curl -s {server.url}/foundationModels/v1/completion -H 'Content-Type: application/json' \\\n"
          f"    -d '{{\"modelUri\": \"gpt://{folder}/yandexgpt-lite/latest\", "
          f"\"completionOptions\": {{\"temperature\": 0.3, \"maxTokens\": \"200\"}}, "
          f"\"messages\": [{{\"role\": \"user\", \"text\": \"Hello\"}}]}}'\n", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
