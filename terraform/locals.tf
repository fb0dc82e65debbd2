locals {
  job_kinds  = toset(["completion", "embedding", "classification"])
  jobs_table = "jobs"

  # The bundle's own key unless the user named one.
  results_kms_key_id = var.results_kms_key_id != "" ? var.results_kms_key_id : yandex_kms_symmetric_key.results[0].id

  # API Gateway's ceiling for a request (10 minutes). No function may run longer (variables.tf), so
  # the gateway never cuts off a function that is still working.
  gateway_timeout_s = 600

  # Environment every backend function reads (no secrets: those come from Lockbox, see functions.tf).
  # The pacing variables are added per function from module.fleet (scaling.tf).
  backend_env = {
    YC_FOLDER_ID             = var.folder_id
    FM_ALLOWED_MODELS        = join(",", var.allowed_models)
    LOG_LEVEL                = var.log_level
    YMQ_ENDPOINT             = "https://message-queue.api.cloud.yandex.net"
    COMPLETION_QUEUE_URL     = yandex_message_queue.jobs["completion"].id
    EMBEDDING_QUEUE_URL      = yandex_message_queue.jobs["embedding"].id
    CLASSIFICATION_QUEUE_URL = yandex_message_queue.jobs["classification"].id
    DOCAPI_ENDPOINT          = yandex_ydb_database_serverless.jobs.document_api_endpoint
    JOBS_TABLE               = local.jobs_table
    RESULTS_BUCKET           = yandex_storage_bucket.results.bucket
    JOBS_TTL_DAYS            = tostring(var.jobs_ttl_days)
    FM_RESPONSES_TTL_DAYS    = tostring(var.responses_ttl_days)
    JOB_LEASE_S              = "660"
    JOB_MAX_DELIVERIES       = tostring(var.max_receive_count) # a task fails after this many failed starts
    FM_AUTH_MODE             = var.auth_mode
    FM_ADMIN_CALLER          = var.admin_caller
    FM_BUDGET_WEBHOOK_URL    = var.budget_webhook_url
    FM_CALLER_NAMES          = join(",", sort(keys(var.caller_api_key_sha256))) # names a stored key cannot take
  }

  # The authorizer's environment: the configured keys come from Lockbox; stored keys from the jobs table.
  authorizer_env = {
    LOG_LEVEL       = var.log_level
    DOCAPI_ENDPOINT = yandex_ydb_database_serverless.jobs.document_api_endpoint
    JOBS_TABLE      = local.jobs_table
    FM_KEY_CACHE_S  = tostring(var.key_cache_seconds)
  }

  # The function map: name -> entry point, sizing, environment, Lockbox secrets, service account.
  # The authorizer exists only behind the gateway (auth_mode = api_key).
  functions = {
    for name, size in var.functions : name => {
      entrypoint = "handler.handler"
      memory     = size.memory
      timeout    = size.timeout
      # Empty values are left out: the service may drop them and every plan would show a diff; the
      # functions read an unset variable as empty (FM_ALLOWED_MODELS, FM_ADMIN_CALLER by default).
      env = { for key, value in(name == "authorizer" ? local.authorizer_env : merge(local.backend_env, module.fleet.pacing_env[name])) : key => value if value != "" }
      secrets = name == "authorizer" ? {
        CALLER_KEY_SHA256     = { id = yandex_lockbox_secret.caller_keys.id, version_id = yandex_lockbox_secret_version.caller_keys.id, key = "sha256" }
        AWS_ACCESS_KEY_ID     = { id = yandex_lockbox_secret.authorizer_keys.id, version_id = yandex_iam_service_account_static_access_key.authorizer.output_to_lockbox_version_id, key = "access_key_id" }
        AWS_SECRET_ACCESS_KEY = { id = yandex_lockbox_secret.authorizer_keys.id, version_id = yandex_iam_service_account_static_access_key.authorizer.output_to_lockbox_version_id, key = "secret_access_key" }
        } : {
        AWS_ACCESS_KEY_ID     = { id = yandex_lockbox_secret.runtime_keys.id, version_id = yandex_iam_service_account_static_access_key.runtime.output_to_lockbox_version_id, key = "access_key_id" }
        AWS_SECRET_ACCESS_KEY = { id = yandex_lockbox_secret.runtime_keys.id, version_id = yandex_iam_service_account_static_access_key.runtime.output_to_lockbox_version_id, key = "secret_access_key" }
      }
      service_account_id = name == "authorizer" ? yandex_iam_service_account.authorizer.id : yandex_iam_service_account.runtime.id
    } if name != "authorizer" || var.auth_mode == "api_key"
  }

  # Queues: one per job kind plus its dead-letter queue; each has exactly one trigger, on the kind's function.
  queue_triggers = merge(
    { for kind in local.job_kinds : kind => { arn = yandex_message_queue.jobs[kind].arn, function = kind } },
    { for kind in local.job_kinds : "${kind}-dlq" => { arn = yandex_message_queue.jobs_dlq[kind].arn, function = kind } },
  )

  # "name:sha256,..."; "none" when no key is configured, so the gateway lets nobody in (never open by default)
  caller_keys = length(var.caller_api_key_sha256) == 0 ? "none" : join(",", [for name, digest in var.caller_api_key_sha256 : "${name}:${digest}"])
}
