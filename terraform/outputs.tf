output "gateway_url" {
  description = "Base URL of the API (auth_mode = api_key): use it in place of https://llm.api.cloud.yandex.net."
  value       = var.auth_mode == "api_key" ? "https://${yandex_api_gateway.this[0].domain}" : null
}

output "function_ids" {
  description = "Function IDs by name (auth_mode = iam: invoke https://functions.yandexcloud.net/<id>?operation=...)."
  value       = { for name, fn in yandex_function.this : name => fn.id }
}

output "queue_urls" {
  description = "Job queues and their dead-letter queues."
  value = merge(
    { for kind, queue in yandex_message_queue.jobs : kind => queue.id },
    { for kind, queue in yandex_message_queue.jobs_dlq : "${kind}-dlq" => queue.id },
  )
}

output "results_bucket" {
  description = "Bucket holding job payloads and results."
  value       = yandex_storage_bucket.results.bucket
}

output "jobs_document_api_endpoint" {
  description = "Document API endpoint of the jobs database."
  value       = yandex_ydb_database_serverless.jobs.document_api_endpoint
}

output "jobs_table" {
  description = "The jobs document table (created at apply time by deploy/jobs_table.py)."
  value       = local.jobs_table
}

output "results_kms_key_id" {
  description = "KMS key encrypting the results bucket (the bundle's own unless results_kms_key_id was given)."
  value       = local.results_kms_key_id
}

output "fleet_pacing" {
  description = "Per upstream quota: the quota, the most instances that may spend it at once, and each one's share."
  value       = module.fleet.fleet
}
