# Fleet-wide pacing, as arithmetic only (no provider), so `terraform console` can evaluate it offline
# and the tests do. Cloud Functions runs up to zone_instances_limit instances of a function in each
# zone and spreads calls over the zones at random; every instance paces its own upstream calls. So an
# instance gets quota ÷ (zones × instances) and the whole fleet stays within the quota, at the price
# that a lone instance only ever gets its share.

variable "zones" {
  description = "Availability zones Cloud Functions may run an instance in (ru-central1: a, b, d)."
  type        = number
  validation {
    condition     = var.zones >= 1 && floor(var.zones) == var.zones
    error_message = "zones must be a whole number of at least 1."
  }
}

variable "functions" {
  description = "Per function: instances per zone it may run (the scaling policy's zone_instances_limit)."
  type = map(object({
    zone_instances = number
  }))
  validation {
    condition     = alltrue([for f in values(var.functions) : f.zone_instances >= 1 && floor(f.zone_instances) == f.zone_instances])
    error_message = "zone_instances must be a whole number of at least 1 (0 would mean no limit)."
  }
}

variable "queued_calls_per_instance" {
  description = "Calls a zone holds waiting per instance before Cloud Functions answers 429."
  type        = number
  validation {
    condition     = var.queued_calls_per_instance >= 0 && floor(var.queued_calls_per_instance) == var.queued_calls_per_instance
    error_message = "queued_calls_per_instance must be a whole number of at least 0."
  }
}

variable "zone_instance_quota" {
  description = "The cloud's quota of function instances per zone (10 by default), shared by every function in it."
  type        = number
}

variable "quotas" {
  description = "Upstream Foundation Models quotas for the whole deployment (per cloud, or this deployment's share)."
  type = object({
    embedding_rps        = number # textEmbedding calls per second
    classification_rps   = number # fewShotTextClassification / textClassification calls per second
    async_start_rps      = number # completionAsync starts per second
    async_start_per_hour = number # completionAsync starts per hour
    operation_get_rps    = number # operation polls per second
    sync_generations     = number # concurrent synchronous generations
  })
  validation {
    condition     = alltrue([for name, value in var.quotas : value > 0])
    error_message = "every quota must be positive."
  }
}

locals {
  # Which quota each function spends, and the variable its instances pace themselves with
  # (shared/config.py). Only these functions make these calls: embedding (sync and its queue's jobs),
  # classification (likewise), completion (its queue starts batch chunks upstream), batch_poller (polls).
  paced = {
    embedding_rps        = { env = "FM_EMBEDDING_RPS", users = ["embedding"], per_hour = false }
    classification_rps   = { env = "FM_CLASSIFICATION_RPS", users = ["classification"], per_hour = false }
    async_start_rps      = { env = "FM_ASYNC_START_RPS", users = ["completion"], per_hour = false }
    async_start_per_hour = { env = "FM_ASYNC_START_PER_HOUR", users = ["completion"], per_hour = true }
    operation_get_rps    = { env = "FM_OPERATION_GET_RPS", users = ["batch_poller"], per_hour = false }
  }

  # A Python instance serves one call at a time, so a concurrency quota caps instances instead:
  # every completion instance runs at most one generation. One instance per zone is the floor.
  instance_caps = { completion = max(1, floor(var.quotas.sync_generations / var.zones)) }

  zone_instances = {
    for name, f in var.functions : name => min(f.zone_instances, lookup(local.instance_caps, name, f.zone_instances))
  }

  # The most instances that can spend each quota at once, fleet-wide.
  fleet_instances = {
    for quota, p in local.paced : quota => var.zones * sum([for user in p.users : lookup(local.zone_instances, user, 0)])
  }

  # Each instance's share, rounded down (3 decimals per second, whole calls per hour) so the fleet
  # never adds up to more than the quota.
  per_instance = {
    for quota, p in local.paced : quota => (
      p.per_hour ? floor(var.quotas[quota] / max(1, local.fleet_instances[quota]))
      : floor(var.quotas[quota] * 1000 / max(1, local.fleet_instances[quota])) / 1000
    )
  }
}

output "scaling" {
  description = "Per function: the scaling policy's zone_instances_limit and zone_requests_limit."
  value = {
    for name, instances in local.zone_instances : name => {
      zone_instances_limit = instances
      zone_requests_limit  = instances * (1 + var.queued_calls_per_instance)
    }
  }
  precondition {
    condition     = sum(values(local.zone_instances)) <= var.zone_instance_quota
    error_message = "The functions' zone_instances add up to more than zone_instance_quota: lower them or raise the quota."
  }
}

output "pacing_env" {
  description = "Per function: the pacing variables its instances read, each the instance's share of its quota."
  value = {
    for name in keys(var.functions) : name => {
      for quota, p in local.paced : p.env => tostring(local.per_instance[quota]) if contains(p.users, name)
    }
  }
  precondition {
    condition     = alltrue([for quota, share in local.per_instance : share > 0])
    error_message = "A quota is too small to share among its instances (each would get 0): raise it or lower zone_instances."
  }
}

output "fleet" {
  description = "Per quota: the quota, the instances that may spend it at once, and each one's share."
  value = {
    for quota, p in local.paced : quota => {
      quota     = var.quotas[quota]
      instances = local.fleet_instances[quota]
      share     = local.per_instance[quota]
      env       = p.env
      users     = p.users
    }
  }
}
