# One service account per job, each with only the roles it needs, each granted on the one resource
# that needs it: the runtime's key secret, the jobs database, the results bucket and its KMS key, the
# caller-keys secret, each function. Folder-level members remain only for roles the provider has no
# resource-level grant for (Foundation Models, Message Queue queues); tests/terraform checks that
# against the provider schema.

resource "yandex_iam_service_account" "runtime" {
  name        = "${var.name_prefix}-runtime"
  description = "Runs the backend functions: calls Foundation Models, writes jobs, sends queue messages."
}

resource "yandex_iam_service_account" "authorizer" {
  name        = "${var.name_prefix}-authorizer"
  description = "Runs the API Gateway authorizer: reads the caller key hashes from Lockbox and stored keys from the jobs table."
}

resource "yandex_iam_service_account" "invoker" {
  name        = "${var.name_prefix}-invoker"
  description = "Used by API Gateway and the triggers to invoke the functions."
}

resource "yandex_iam_service_account" "queue_reader" {
  name        = "${var.name_prefix}-queue-reader"
  description = "Used by the Message Queue triggers to read their queues."
}

resource "yandex_iam_service_account" "queue_manager" {
  name        = "${var.name_prefix}-queue-manager"
  description = "Lets Terraform manage the queues (the SQS API needs a static key)."
}

locals {
  runtime_member = "serviceAccount:${yandex_iam_service_account.runtime.id}"

  # Folder-level: no resource-level grant exists for these (Foundation Models; queues).
  folder_roles = {
    runtime       = ["ai.languageModels.user", "ymq.writer"] # completion, embeddings, classification; send job messages
    queue_reader  = [var.queue_trigger_role]                 # the triggers receive, delete and re-show messages
    queue_manager = ["ymq.admin"]                            # Terraform creates and updates the queues
  }
  folder_grants = merge([
    for account, roles in local.folder_roles : { for role in roles : "${account}/${role}" => { account = account, role = role } }
  ]...)
  service_accounts = {
    runtime       = yandex_iam_service_account.runtime.id
    queue_reader  = yandex_iam_service_account.queue_reader.id
    queue_manager = yandex_iam_service_account.queue_manager.id
  }
}

resource "yandex_resourcemanager_folder_iam_member" "this" {
  for_each = local.folder_grants

  folder_id = var.folder_id
  role      = each.value.role
  member    = "serviceAccount:${local.service_accounts[each.value.account]}"

  sleep_after = var.iam_propagation_s # grants take effect some seconds later (see variables.tf)
}

# The runtime reads only its own static key's secret (delivered through secrets {}).
resource "yandex_lockbox_secret_iam_member" "runtime_keys" {
  secret_id = yandex_lockbox_secret.runtime_keys.id
  role      = "lockbox.payloadViewer"
  member    = local.runtime_member

  sleep_after = var.iam_propagation_s # grants take effect some seconds later (see variables.tf)
}

# The authorizer reads only the caller key hashes.
resource "yandex_lockbox_secret_iam_member" "caller_keys" {
  secret_id = yandex_lockbox_secret.caller_keys.id
  role      = "lockbox.payloadViewer"
  member    = "serviceAccount:${yandex_iam_service_account.authorizer.id}"

  sleep_after = var.iam_propagation_s # grants take effect some seconds later (see variables.tf)
}

# The authorizer reads its own static key (the Document API speaks AWS signatures).
resource "yandex_lockbox_secret_iam_member" "authorizer_keys" {
  secret_id = yandex_lockbox_secret.authorizer_keys.id
  role      = "lockbox.payloadViewer"
  member    = "serviceAccount:${yandex_iam_service_account.authorizer.id}"

  sleep_after = var.iam_propagation_s # grants take effect some seconds later (see variables.tf)
}

# The authorizer only reads the jobs table (stored caller keys, shared/jobs/keys.py): ydb.viewer.
resource "yandex_ydb_database_iam_binding" "authorizer" {
  database_id = yandex_ydb_database_serverless.jobs.id
  role        = "ydb.viewer"
  members     = ["serviceAccount:${yandex_iam_service_account.authorizer.id}"]

  sleep_after = var.iam_propagation_s # grants take effect some seconds later (see variables.tf)
}

# The jobs document table. The provider has only the authoritative binding for databases; the bundle
# creates this database, so the binding governs a role on a resource nobody else manages.
resource "yandex_ydb_database_iam_binding" "jobs" {
  database_id = yandex_ydb_database_serverless.jobs.id
  role        = "ydb.editor"
  members     = [local.runtime_member]

  sleep_after = var.iam_propagation_s # grants take effect some seconds later (see variables.tf)
}

# Payloads, results and uploaded files: upload, read and delete (DELETE /v1/files/{id} removes the
# bytes). storage.uploader "does not allow you to delete objects" (the docs' _roles/storage/uploader.md);
# storage.editor is the narrowest built-in role that may, and it is granted on this bucket only (it
# cannot manage ACLs or make the bucket public). Only the authoritative binding exists for buckets; the
# bucket is the bundle's own.
resource "yandex_storage_bucket_iam_binding" "results" {
  bucket  = yandex_storage_bucket.results.bucket
  role    = "storage.editor"
  members = [local.runtime_member]
}

# Objects in the results bucket are encrypted with this key: writing and reading them needs it.
resource "yandex_kms_symmetric_key_iam_member" "results" {
  symmetric_key_id = local.results_kms_key_id
  role             = "kms.keys.encrypterDecrypter"
  member           = local.runtime_member

  sleep_after = var.iam_propagation_s # grants take effect some seconds later (see variables.tf)
}

# Invoking is granted per function: the invoker account (gateway, triggers) on every function; with
# auth_mode = iam, the listed members on the backends.
resource "yandex_function_iam_member" "invoker" {
  for_each = yandex_function.this

  function_id = each.value.id
  role        = "functions.functionInvoker"
  member      = "serviceAccount:${yandex_iam_service_account.invoker.id}"

  sleep_after = var.iam_propagation_s # grants take effect some seconds later (see variables.tf)
}

resource "yandex_function_iam_member" "iam_callers" {
  for_each = var.auth_mode == "iam" ? {
    for pair in setproduct([for name in keys(local.functions) : name if name != "authorizer"], var.iam_invokers) :
    "${pair[0]}/${pair[1]}" => { function = pair[0], member = pair[1] }
  } : {}

  function_id = yandex_function.this[each.value.function].id
  role        = "functions.functionInvoker"
  member      = each.value.member

  sleep_after = var.iam_propagation_s # grants take effect some seconds later (see variables.tf)
}

# The runtime account's static key (Message Queue, Document API and Object Storage speak AWS
# signatures) goes straight into Lockbox: it never reaches the state, a variable or an output.
resource "yandex_iam_service_account_static_access_key" "runtime" {
  service_account_id = yandex_iam_service_account.runtime.id
  description        = "Runtime key for Message Queue, the jobs table and the results bucket"

  output_to_lockbox {
    secret_id            = yandex_lockbox_secret.runtime_keys.id
    entry_for_access_key = "access_key_id"
    entry_for_secret_key = "secret_access_key"
  }
}

# The authorizer's static key, straight into Lockbox like the runtime's: read-only on the jobs table.
resource "yandex_iam_service_account_static_access_key" "authorizer" {
  service_account_id = yandex_iam_service_account.authorizer.id
  description        = "Authorizer key for reading stored caller keys in the jobs table"

  output_to_lockbox {
    secret_id            = yandex_lockbox_secret.authorizer_keys.id
    entry_for_access_key = "access_key_id"
    entry_for_secret_key = "secret_access_key"
  }
}

# Terraform's own key for creating the queues (the provider manages queues over the SQS API).
# Its secret is in the state only; mark the state as sensitive as you would any state.
resource "yandex_iam_service_account_static_access_key" "queue_manager" {
  service_account_id = yandex_iam_service_account.queue_manager.id
  description        = "Terraform manages the queues with this key"
}
