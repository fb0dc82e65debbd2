resource "yandex_lockbox_secret" "runtime_keys" {
  name        = "${var.name_prefix}-runtime-keys"
  description = "Static access key of the runtime service account (written by the provider, read by the functions)"
}

resource "yandex_lockbox_secret" "authorizer_keys" {
  name        = "${var.name_prefix}-authorizer-keys"
  description = "Static access key of the authorizer service account: reads stored caller keys in the jobs table"
}

resource "yandex_lockbox_secret" "caller_keys" {
  name        = "${var.name_prefix}-caller-keys"
  description = "SHA-256 hashes of the caller API keys the gateway authorizer accepts"
}

resource "yandex_lockbox_secret_version" "caller_keys" {
  secret_id = yandex_lockbox_secret.caller_keys.id

  entries {
    key        = "sha256"
    text_value = local.caller_keys # hashes only: the keys themselves are never given to Terraform
  }
}
