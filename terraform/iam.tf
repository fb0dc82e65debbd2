# One service account per job, each with only the roles it needs. The provider schema this bundle
# targets has per-resource IAM only for functions, so the other grants are folder-level members of
# the narrowest role that covers the job.

resource "yandex_iam_service_account" "runtime" {
  name        = "${var.name_prefix}-runtime"
  description = "Runs the backend functions: calls Foundation Models, writes jobs, sends queue messages."
}

resource "yandex_iam_service_account" "authorizer" {
  name        = "${var.name_prefix}-authorizer"
  description = "Runs the API Gateway authorizer: reads the caller key hashes from Lockbox."
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
  folder_roles = {
    runtime = [
      "ai.languageModels.user", # completion, embeddings, classification
      "lockbox.payloadViewer",  # the static key, delivered through secrets {}
      "ymq.writer",             # send job messages
      "ydb.editor",             # the jobs document table
      "storage.uploader",       # payloads and results (read and write, no delete)
    ]
    authorizer    = ["lockbox.payloadViewer"]
    queue_reader  = ["ymq.reader"]
    queue_manager = ["ymq.admin"]
  }
  folder_grants = merge([
    for account, roles in local.folder_roles : { for role in roles : "${account}/${role}" => { account = account, role = role } }
  ]...)
  service_accounts = {
    runtime       = yandex_iam_service_account.runtime.id
    authorizer    = yandex_iam_service_account.authorizer.id
    queue_reader  = yandex_iam_service_account.queue_reader.id
    queue_manager = yandex_iam_service_account.queue_manager.id
  }
}

resource "yandex_resourcemanager_folder_iam_member" "runtime" {
  for_each = { for key, grant in local.folder_grants : key => grant if grant.account == "runtime" }

  folder_id = var.folder_id
  role      = each.value.role
  member    = "serviceAccount:${local.service_accounts[each.value.account]}"
}

resource "yandex_resourcemanager_folder_iam_member" "authorizer" {
  for_each = { for key, grant in local.folder_grants : key => grant if grant.account == "authorizer" }

  folder_id = var.folder_id
  role      = each.value.role
  member    = "serviceAccount:${local.service_accounts[each.value.account]}"
}

resource "yandex_resourcemanager_folder_iam_member" "queues" {
  for_each = { for key, grant in local.folder_grants : key => grant if contains(["queue_reader", "queue_manager"], grant.account) }

  folder_id = var.folder_id
  role      = each.value.role
  member    = "serviceAccount:${local.service_accounts[each.value.account]}"
}

# Invoking is granted per function: the invoker account (gateway, triggers) on the backends and the
# authorizer; with auth_mode = iam, the listed members on the backends.
resource "yandex_function_iam_member" "invoker" {
  for_each = yandex_function.this

  function_id = each.value.id
  role        = "functions.functionInvoker"
  member      = "serviceAccount:${yandex_iam_service_account.invoker.id}"
}

resource "yandex_function_iam_member" "iam_callers" {
  for_each = var.auth_mode == "iam" ? {
    for pair in setproduct([for name in keys(local.functions) : name if name != "authorizer"], var.iam_invokers) :
    "${pair[0]}/${pair[1]}" => { function = pair[0], member = pair[1] }
  } : {}

  function_id = yandex_function.this[each.value.function].id
  role        = "functions.functionInvoker"
  member      = each.value.member
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

# Terraform's own key for creating the queues (the provider manages queues over the SQS API).
# Its secret is in the state only; mark the state as sensitive as you would any state.
resource "yandex_iam_service_account_static_access_key" "queue_manager" {
  service_account_id = yandex_iam_service_account.queue_manager.id
  description        = "Terraform manages the queues with this key"
}
