# Fleet-wide pacing. Each instance paces its own upstream calls; Cloud Functions may run
# zone_instances_limit instances of a function in each of function_zones zones; so every instance
# gets quota ÷ (zones × instances) of the quota it spends and the fleet stays within it. The
# arithmetic is in modules/fleet (no provider, so the tests evaluate it with terraform itself).
module "fleet" {
  source = "./modules/fleet"

  zones                     = var.function_zones
  functions                 = var.functions
  queued_calls_per_instance = var.queued_calls_per_instance
  zone_instance_quota       = var.zone_instance_quota
  quotas = {
    embedding_rps        = var.fm_embedding_rps
    classification_rps   = var.fm_classification_rps
    async_start_rps      = var.fm_async_start_rps
    async_start_per_hour = var.fm_async_start_per_hour
    operation_get_rps    = var.fm_operation_get_rps
    sync_generations     = var.fm_sync_generations
  }
}

resource "yandex_function_scaling_policy" "this" {
  for_each = yandex_function.this

  function_id = each.value.id

  policy {
    tag                  = "$latest"
    zone_instances_limit = module.fleet.scaling[each.key].zone_instances_limit
    zone_requests_limit  = module.fleet.scaling[each.key].zone_requests_limit
  }
}
