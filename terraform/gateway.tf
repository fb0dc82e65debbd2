resource "yandex_api_gateway" "this" {
  count = var.auth_mode == "api_key" ? 1 : 0

  name              = "${var.name_prefix}-api"
  description       = "Foundation Models API (native paths) behind the yc-fm-functions handlers"
  execution_timeout = tostring(local.gateway_timeout_s) # the 10-minute ceiling; no function runs longer
  spec = templatefile("${path.module}/openapi.yaml.tftpl", {
    function_ids               = { for name, fn in yandex_function.this : name => fn.id }
    invoker_service_account_id = yandex_iam_service_account.invoker.id
    authorizer_function_id     = yandex_function.this["authorizer"].id
    authorizer_cache_seconds   = var.authorizer_cache_seconds
  })

  log_options {
    min_level = var.log_level
  }

  depends_on = [yandex_function_iam_member.invoker]
}
