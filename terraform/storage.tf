resource "yandex_ydb_database_serverless" "jobs" {
  name                = "${var.name_prefix}-jobs"
  deletion_protection = false
}

# The jobs document table (key `id`, TTL on `expires_at`). The provider has no resource for Document
# API tables, so this step creates it once at apply time through the Document API itself, with the
# credentials of whoever runs Terraform, found in the provider's order (YC_SERVICE_ACCOUNT_KEY_FILE,
# YC_TOKEN; then YC_IAM_TOKEN, `yc iam create-token`, the VM's metadata service). The functions then
# assume it exists and never call DescribeTable on a cold start. Runs again only if the database is
# replaced or the table renamed; `make jobs-table` runs it by hand (it is idempotent).
resource "terraform_data" "jobs_table" {
  triggers_replace = [yandex_ydb_database_serverless.jobs.id, local.jobs_table]

  provisioner "local-exec" {
    command     = "${var.python} -m deploy.jobs_table"
    working_dir = "${path.module}/.."
    environment = {
      DOCAPI_ENDPOINT = yandex_ydb_database_serverless.jobs.document_api_endpoint
      JOBS_TABLE      = local.jobs_table
    }
  }
}

# The bundle's own KMS key for the results bucket, rotated yearly, unless results_kms_key_id names one.
resource "yandex_kms_symmetric_key" "results" {
  count = var.results_kms_key_id == "" ? 1 : 0

  name              = "${var.name_prefix}-results"
  description       = "Encrypts the yc-fm-functions results bucket"
  default_algorithm = "AES_256"
  rotation_period   = "8760h" # a year
}

resource "yandex_storage_bucket" "results" {
  bucket_prefix = "${var.name_prefix}-results-"
  folder_id     = var.folder_id # with a user IAM token the provider cannot tell the folder otherwise
  force_destroy = var.force_destroy_bucket
  acl           = "private"

  anonymous_access_flags {
    read        = false
    list        = false
    config_read = false
  }

  server_side_encryption_configuration {
    rule {
      apply_server_side_encryption_by_default {
        kms_master_key_id = local.results_kms_key_id
        sse_algorithm     = "aws:kms"
      }
    }
  }

  # Objects expire by prefix, with the records that name them: a job's payloads and results and the
  # OpenAI files after jobs_ttl_days, stored /v1/responses after responses_ttl_days.
  dynamic "lifecycle_rule" {
    for_each = {
      requests  = var.jobs_ttl_days
      results   = var.jobs_ttl_days
      files     = var.jobs_ttl_days
      responses = var.responses_ttl_days
    }
    content {
      id                                     = "expire-${lifecycle_rule.key}"
      enabled                                = true
      abort_incomplete_multipart_upload_days = 1
      filter {
        prefix = "${lifecycle_rule.key}/"
      }
      expiration {
        days = lifecycle_rule.value
      }
    }
  }
}
