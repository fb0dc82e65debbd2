# One trigger per queue, dead-letter queues included: a DLQ's trigger runs the same function, which
# ends the operations whose messages the queue gave up on.
resource "yandex_function_trigger" "queues" {
  for_each = local.queue_triggers

  name        = "${var.name_prefix}-${each.key}"
  description = "Runs the ${each.value.function} function on messages from ${each.key}"

  message_queue {
    queue_id           = each.value.arn
    service_account_id = yandex_iam_service_account.queue_reader.id
    batch_size         = tostring(var.queue_batch_size)
    batch_cutoff       = tostring(var.queue_batch_cutoff)
    visibility_timeout = "720"
  }

  function {
    id                 = yandex_function.this[each.value.function].id
    service_account_id = yandex_iam_service_account.invoker.id
  }

  depends_on = [yandex_function_iam_member.invoker]
}

# The batch poller runs on a timer: it advances batches, cancels upstream work of cancelled ones and
# re-enqueues stuck jobs. Overlapping runs are safe (each holds a lease per batch).
resource "yandex_function_trigger" "poller" {
  name        = "${var.name_prefix}-batch-poller"
  description = "Runs the batch poller on ${var.poller_schedule} (UTC)"

  timer {
    cron_expression = var.poller_schedule
    payload         = jsonencode({ task = "poll_batches" })
  }

  function {
    id                 = yandex_function.this["batch_poller"].id
    service_account_id = yandex_iam_service_account.invoker.id
    retry_attempts     = "1"
    retry_interval     = "10"
  }

  depends_on = [yandex_function_iam_member.invoker]
}
