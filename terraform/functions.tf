resource "yandex_function" "this" {
  for_each = local.functions

  name               = "${var.name_prefix}-${replace(each.key, "_", "-")}" # the API takes [a-z][-a-z0-9]{1,61}[a-z0-9]: no underscore
  description        = "yc-fm-functions: ${each.key}"
  runtime            = "python312"
  entrypoint         = each.value.entrypoint
  memory             = each.value.memory
  execution_timeout  = tostring(each.value.timeout)
  service_account_id = each.value.service_account_id
  user_hash          = filesha256("${var.package_dir}/${each.key}.zip")
  environment        = each.value.env

  content {
    zip_filename = "${var.package_dir}/${each.key}.zip"
  }

  dynamic "secrets" {
    for_each = each.value.secrets
    content {
      id                   = secrets.value.id
      version_id           = secrets.value.version_id
      key                  = secrets.value.key
      environment_variable = secrets.key
    }
  }

  metadata_options {
    aws_v1_http_endpoint = 2 # disabled: only the Google-style metadata endpoint answers
    gce_http_endpoint    = 1
  }

  log_options {
    min_level = var.log_level
  }

  # Every grant the functions use is in place before they can run (secrets {} needs the Lockbox
  # grant when the version is created), and so is the jobs table.
  depends_on = [
    yandex_resourcemanager_folder_iam_member.this,
    yandex_lockbox_secret_iam_member.runtime_keys,
    yandex_lockbox_secret_iam_member.caller_keys,
    yandex_lockbox_secret_iam_member.authorizer_keys,
    yandex_ydb_database_iam_binding.authorizer,
    yandex_ydb_database_iam_binding.jobs,
    yandex_storage_bucket_iam_binding.results,
    yandex_kms_symmetric_key_iam_member.results,
    terraform_data.jobs_table,
  ]
}
