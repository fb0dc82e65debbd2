resource "yandex_ydb_database_serverless" "jobs" {
  name                = "${var.name_prefix}-jobs"
  deletion_protection = false
  # The jobs document table (key `id`, TTL on `expires_at`) is created by the functions on first use:
  # document tables are made through the Document API, not by this provider.
}

resource "yandex_storage_bucket" "results" {
  bucket_prefix = "${var.name_prefix}-results-"
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
        kms_master_key_id = var.results_kms_key_id
        sse_algorithm     = "aws:kms"
      }
    }
  }

  lifecycle_rule {
    id                                     = "expire-jobs"
    enabled                                = true
    abort_incomplete_multipart_upload_days = 1
    expiration {
      days = var.jobs_ttl_days
    }
  }
}
