resource "yandex_message_queue" "jobs_dlq" {
  for_each = local.job_kinds

  name                      = "${var.name_prefix}-${each.key}-dlq"
  message_retention_seconds = 1209600 # 14 days, the maximum
  access_key                = yandex_iam_service_account_static_access_key.queue_manager.access_key
  secret_key                = yandex_iam_service_account_static_access_key.queue_manager.secret_key

  depends_on = [yandex_resourcemanager_folder_iam_member.this]
}

resource "yandex_message_queue" "jobs" {
  for_each = local.job_kinds

  name                       = "${var.name_prefix}-${each.key}"
  visibility_timeout_seconds = 720 # longer than a worker may hold a job (JOB_LEASE_S = 660)
  message_retention_seconds  = 345600
  receive_wait_time_seconds  = 20
  access_key                 = yandex_iam_service_account_static_access_key.queue_manager.access_key
  secret_key                 = yandex_iam_service_account_static_access_key.queue_manager.secret_key
  redrive_policy = jsonencode({
    deadLetterTargetArn = yandex_message_queue.jobs_dlq[each.key].arn
    maxReceiveCount     = var.max_receive_count
  })

  depends_on = [yandex_resourcemanager_folder_iam_member.this]
}
