"""A local trigger runner: polls each queue and invokes the matching handler with a real Message Queue
trigger event, as the platform does: up to `batch_size` messages gathered for at most `cutoff_s`,
deleted only when the handler returns; if it raises, the messages go back to the queue (visible again
after `retry_visibility_s`), so the queue's redrive policy eventually moves a poison message to its DLQ.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from local import functions
from local.context import LocalContext
from shared import logs
from shared.jobs.queue import Message, QueueClient

log = logs.get_logger("triggers")


def ymq_event(messages: list[Message], queue_arn: str) -> dict[str, Any]:
    """The documented Message Queue trigger event for these messages."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"messages": [{
        "event_metadata": {"event_id": message.message_id, "event_type": "yandex.cloud.events.messagequeue.QueueMessage",
                           "created_at": now},
        "details": {"queue_id": queue_arn, "message": {
            "message_id": message.message_id, "md5_of_body": message.md5_of_body or hashlib.md5(message.body.encode()).hexdigest(),
            "body": message.body, "attributes": dict(message.attributes), "message_attributes": {},
            "md5_of_message_attributes": ""}},
    } for message in messages]}


class QueueTrigger:
    def __init__(self, queues: QueueClient, queue_url: str, queue_arn: str, function: str, batch_size: int = 10,
                 cutoff_s: float = 1.0, retry_visibility_s: int = 1, timeout_s: float = 600.0) -> None:
        self.queues, self.queue_url, self.queue_arn = queues, queue_url, queue_arn
        self.function, self.batch_size, self.cutoff_s = function, batch_size, cutoff_s
        self.retry_visibility_s, self.timeout_s = retry_visibility_s, timeout_s
        self.invocations = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self, wait_s: int = 0) -> int:
        """Gather one batch (up to the cutoff) and invoke the handler; the number of messages handled."""
        batch: list[Message] = []
        deadline = time.monotonic() + (self.cutoff_s if wait_s else 0)
        while len(batch) < self.batch_size:
            got = self.queues.receive(self.queue_url, self.batch_size - len(batch),
                                      wait_s=wait_s if not batch else 0, visibility_s=int(self.timeout_s) + 30)
            batch.extend(got)
            if not got or time.monotonic() >= deadline:
                break
        if not batch:
            return 0
        self.invocations += 1
        handler = functions.load(self.function)
        try:
            handler(ymq_event(batch, self.queue_arn), LocalContext(self.function, timeout_s=self.timeout_s,
                                                                  request_id=str(uuid.uuid4())))
        except Exception as err:  # the platform's reaction to a failed invocation: messages go back
            self.failures += 1
            log.info("trigger invocation failed; messages return to the queue",
                     extra={"function": self.function, "messages": len(batch), "error": str(err)[:300]})
            for message in batch:
                self.queues.change_visibility(self.queue_url, message.receipt_handle, self.retry_visibility_s)
            return len(batch)
        for message in batch:
            self.queues.delete(self.queue_url, message.receipt_handle)
        return len(batch)

    def start(self) -> QueueTrigger:
        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.poll_once(wait_s=1)
                except Exception:
                    log.exception("trigger runner error", extra={"queue": self.queue_url})
                    time.sleep(1)

        self._thread = threading.Thread(target=loop, name=f"trigger-{self.function}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)


def timer_event(payload: str = '{"task": "poll_batches"}') -> dict[str, Any]:
    """The documented timer trigger event."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"messages": [{
        "event_metadata": {"event_id": uuid.uuid4().hex[:20], "event_type": "yandex.cloud.events.serverless.triggers.TimerMessage",
                           "created_at": now, "cloud_id": "local", "folder_id": "local"},
        "details": {"trigger_id": "local-timer", "payload": payload}}]}


class TimerTrigger:
    """Invokes a function every `interval_s` seconds with a timer event (the platform's cron, locally)."""

    def __init__(self, function: str, interval_s: float, timeout_s: float = 60.0) -> None:
        self.function, self.interval_s, self.timeout_s = function, interval_s, timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def fire(self) -> Any:
        return functions.load(self.function)(timer_event(), LocalContext(self.function, timeout_s=self.timeout_s))

    def start(self) -> TimerTrigger:
        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                try:
                    self.fire()
                except Exception:
                    log.exception("timer invocation failed", extra={"function": self.function})

        self._thread = threading.Thread(target=loop, name=f"timer-{self.function}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()


def queue_triggers(queues: QueueClient, resources: Any, batch_size: int = 10, cutoff_s: float = 1.0,
                   retry_visibility_s: int = 1) -> list[QueueTrigger]:
    """One trigger per queue, DLQs included (a DLQ's trigger ends the operations it holds)."""
    return [QueueTrigger(queues, url, resources.arns[name], name.removesuffix("-dlq"), batch_size, cutoff_s,
                         retry_visibility_s) for name, url in resources.queues.items()]
