variable "cloud_id" {
  description = "Cloud ID (b1g...)."
  type        = string
}

variable "folder_id" {
  description = "Folder ID the whole bundle is created in; also used to expand short model names."
  type        = string
}

variable "zone" {
  description = "Default availability zone."
  type        = string
  default     = "ru-central1-d"
  validation {
    condition     = contains(["ru-central1-a", "ru-central1-b", "ru-central1-d"], var.zone)
    error_message = "zone must be one of ru-central1-a, ru-central1-b, ru-central1-d."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name, so a second deployment can share the folder or the cloud (service account names are unique per cloud)."
  type        = string
  default     = "fm"
  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,19}[a-z0-9])?$", var.name_prefix))
    error_message = "name_prefix must be 1-21 lower-case letters, digits or dashes, starting with a letter and not ending with a dash."
  }
}

variable "package_dir" {
  description = "Where `make package` writes the function archives."
  type        = string
  default     = "../dist"
}

variable "functions" {
  description = "Per function: memory in MB (a multiple of 128), execution timeout in seconds (at most 600, API Gateway's ceiling), and instances per availability zone (the scaling policy; see scaling.tf and the README on pacing)."
  type = map(object({
    memory         = optional(number, 256)
    timeout        = optional(number, 60)
    zone_instances = optional(number, 1)
  }))
  default = {
    completion     = { memory = 256, timeout = 600, zone_instances = 3 }
    embedding      = { memory = 256, timeout = 600, zone_instances = 1 }
    classification = { memory = 256, timeout = 600, zone_instances = 1 }
    operations     = { memory = 128, timeout = 30, zone_instances = 2 }
    batch_poller   = { memory = 256, timeout = 300, zone_instances = 1 }
    authorizer     = { memory = 128, timeout = 10, zone_instances = 2 }
  }
  validation {
    condition     = length(setsubtract(["completion", "embedding", "classification", "operations", "batch_poller", "authorizer"], keys(var.functions))) == 0 && length(setsubtract(keys(var.functions), ["completion", "embedding", "classification", "operations", "batch_poller", "authorizer"])) == 0
    error_message = "functions must size exactly completion, embedding, classification, operations, batch_poller and authorizer (an override replaces the whole map: repeat the ones you keep at their defaults)."
  }
  validation {
    condition     = alltrue([for f in values(var.functions) : f.memory >= 128 && f.memory <= 4096 && f.memory % 128 == 0])
    error_message = "memory must be a multiple of 128 between 128 and 4096 MB."
  }
  validation {
    condition     = alltrue([for f in values(var.functions) : f.timeout >= 1 && f.timeout <= 600])
    error_message = "timeout must be between 1 and 600 seconds (API Gateway cuts every request at 10 minutes)."
  }
  validation {
    condition     = alltrue([for f in values(var.functions) : f.zone_instances >= 1 && floor(f.zone_instances) == f.zone_instances])
    error_message = "zone_instances must be a whole number of at least 1."
  }
}

variable "auth_mode" {
  description = "api_key: an API Gateway with a function authorizer checking the caller key in Authorization (Api-Key or Bearer). iam: no gateway; callers invoke the functions directly with IAM (see iam_invokers)."
  type        = string
  default     = "api_key"
  validation {
    condition     = contains(["api_key", "iam"], var.auth_mode)
    error_message = "auth_mode must be api_key or iam."
  }
}

variable "caller_api_key_sha256" {
  description = "Caller keys (sent as Authorization: Api-Key or Bearer), as name => SHA-256 hex of the key (`make api-key` makes one). Only hashes: never the keys."
  type        = map(string)
  default     = {}
  validation {
    condition     = alltrue([for h in values(var.caller_api_key_sha256) : can(regex("^[0-9a-f]{64}$", h))])
    error_message = "each value must be a lower-case SHA-256 hex digest (64 characters)."
  }
  validation {
    condition     = alltrue([for n in keys(var.caller_api_key_sha256) : can(regex("^[A-Za-z0-9_.-]{1,40}$", n)) && n != "anonymous"])
    error_message = "key names must be 1-40 letters, digits, dots, dashes or underscores, and not anonymous (the caller nothing names: every invoker with auth_mode = iam)."
  }
  validation {
    # The authorizer reads the list from Lockbox as the environment variable CALLER_KEY_SHA256, and a
    # function's environment, Lockbox secrets included, may hold 4 KB (names and values). What the
    # authorizer's environment holds besides (LOG_LEVEL, the store's endpoint and table, its static key)
    # leaves the list 3,600 bytes: 33 keys with 40-character names, 52 with two-character names. More
    # callers: store their keys through the admin API (docs/keys.md), which has no such limit.
    condition     = length(join(",", [for name, digest in var.caller_api_key_sha256 : "${name}:${digest}"])) <= 3600
    error_message = "the caller keys, written as name:sha256 joined by commas, must fit in 3,600 bytes (a function's environment, Lockbox secrets included, holds 4 KB): use shorter key names or fewer keys, or store keys through the admin API (docs/keys.md)."
  }
}

variable "admin_caller" {
  description = "A caller key name (a key of caller_api_key_sha256) that may read and cancel everyone's operations, batches and files (FM_ADMIN_CALLER); empty: nobody."
  type        = string
  default     = ""
  validation {
    condition     = var.admin_caller == "" || (can(regex("^[A-Za-z0-9_.-]{1,40}$", var.admin_caller)) && var.admin_caller != "anonymous")
    error_message = "admin_caller must be empty or a key name (1-40 letters, digits, dots, dashes or underscores), and not anonymous: that would make every IAM invoker the admin."
  }
}

variable "iam_invokers" {
  description = "With auth_mode = iam: members allowed to invoke the functions (e.g. serviceAccount:<id>)."
  type        = list(string)
  default     = []
}

variable "allowed_models" {
  description = "Models callers may use (names like yandexgpt-lite, or full URIs); empty allows all."
  type        = list(string)
  default     = []
}

variable "log_level" {
  description = "Minimum level the functions log and Cloud Logging keeps."
  type        = string
  default     = "INFO"
  validation {
    condition     = contains(["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"], var.log_level)
    error_message = "log_level must be one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL."
  }
}

variable "queue_batch_size" {
  description = "Messages per queue-trigger invocation (1-10)."
  type        = number
  default     = 5
  validation {
    condition     = var.queue_batch_size >= 1 && var.queue_batch_size <= 10
    error_message = "queue_batch_size must be between 1 and 10."
  }
}

variable "queue_batch_cutoff" {
  description = "Seconds a queue trigger waits to fill a batch (0-20)."
  type        = number
  default     = 5
  validation {
    condition     = var.queue_batch_cutoff >= 0 && var.queue_batch_cutoff <= 20
    error_message = "queue_batch_cutoff must be between 0 and 20."
  }
}

variable "max_receive_count" {
  description = "Receives of a message before it moves to its dead-letter queue; also the failed starts after which a task fails (JOB_MAX_DELIVERIES, docs/dead-letters.md)."
  type        = number
  default     = 5
  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000
    error_message = "max_receive_count must be between 1 and 1000."
  }
}

variable "jobs_ttl_days" {
  description = "Days operations and their results are kept (upstream keeps async results 3 days)."
  type        = number
  default     = 3
  validation {
    condition     = var.jobs_ttl_days >= 1 && var.jobs_ttl_days <= 365
    error_message = "jobs_ttl_days must be between 1 and 365."
  }
}

variable "responses_ttl_days" {
  description = "Days stored /v1/responses are kept, for GET, previous_response_id and item_reference (FM_RESPONSES_TTL_DAYS; OpenAI keeps them 30)."
  type        = number
  default     = 30
  validation {
    condition     = var.responses_ttl_days >= 1 && var.responses_ttl_days <= 365
    error_message = "responses_ttl_days must be between 1 and 365."
  }
}

variable "budget_webhook_url" {
  description = "URL the functions POST a JSON alert to when a key crosses 80% and 100% of a monthly budget (FM_BUDGET_WEBHOOK_URL); empty: the alert is a log line only. It is in the functions' environment: use a URL whose path holds no secret, or accept that readers of the function versions see it."
  type        = string
  default     = ""
  validation {
    condition     = var.budget_webhook_url == "" || can(regex("^https?://", var.budget_webhook_url))
    error_message = "budget_webhook_url must be empty or an http(s) URL."
  }
}

variable "force_destroy_bucket" {
  description = "Let `terraform destroy` delete the results bucket with objects still in it."
  type        = bool
  default     = true
}

variable "poller_schedule" {
  description = "When the batch poller runs: a 6-field cron expression in UTC (Minutes Hours Day-of-month Month Day-of-week Year)."
  type        = string
  default     = "* * * * ? *"
  validation {
    condition     = length(split(" ", trimspace(var.poller_schedule))) == 6
    error_message = "poller_schedule must have 6 fields, e.g. \"* * * * ? *\" (every minute) or \"0/5 * ? * * *\"."
  }
}

variable "results_kms_key_id" {
  description = "KMS symmetric key for the results bucket. Empty (the default): the bundle creates its own, rotated yearly. Either way the runtime account gets kms.keys.encrypterDecrypter on it."
  type        = string
  default     = ""
  validation {
    condition     = var.results_kms_key_id == "" || can(regex("^[a-z0-9]{20}$", var.results_kms_key_id))
    error_message = "results_kms_key_id must be empty or a KMS key ID (20 lower-case letters and digits)."
  }
}

variable "queue_trigger_role" {
  description = "Folder role of the account the Message Queue triggers read with. The trigger docs ask for editor; ymq.reader (read, delete, change visibility) is all a trigger does. See the README."
  type        = string
  default     = "ymq.reader"
  validation {
    condition     = contains(["ymq.reader", "editor"], var.queue_trigger_role)
    error_message = "queue_trigger_role must be ymq.reader (the narrow role) or editor (what the trigger docs ask for)."
  }
}

variable "python" {
  description = "Python 3 that runs the one-shot deploy step creating the jobs table (standard library only)."
  type        = string
  default     = "python3"
}

# Fleet-wide pacing (scaling.tf). The fm_* values are the quotas of the whole deployment: the
# cloud's Foundation Models quotas, or this deployment's share of them when several share a cloud.

variable "fm_embedding_rps" {
  description = "Embedding calls per second for the whole deployment (the default cloud quota is 10)."
  type        = number
  default     = 10
  validation {
    condition     = var.fm_embedding_rps > 0
    error_message = "fm_embedding_rps must be positive."
  }
}

variable "fm_classification_rps" {
  description = "Classification calls per second for the whole deployment (the default cloud quota is 1)."
  type        = number
  default     = 1
  validation {
    condition     = var.fm_classification_rps > 0
    error_message = "fm_classification_rps must be positive."
  }
}

variable "fm_async_start_rps" {
  description = "completionAsync starts per second for the whole deployment (the default cloud quota is 10)."
  type        = number
  default     = 10
  validation {
    condition     = var.fm_async_start_rps > 0
    error_message = "fm_async_start_rps must be positive."
  }
}

variable "fm_async_start_per_hour" {
  description = "completionAsync starts per hour for the whole deployment (the default cloud quota is 5,000)."
  type        = number
  default     = 5000
  validation {
    condition     = var.fm_async_start_per_hour >= 1
    error_message = "fm_async_start_per_hour must be at least 1."
  }
}

variable "fm_operation_get_rps" {
  description = "Operation polls per second for the whole deployment (the default cloud quota is 50)."
  type        = number
  default     = 50
  validation {
    condition     = var.fm_operation_get_rps > 0
    error_message = "fm_operation_get_rps must be positive."
  }
}

variable "fm_sync_generations" {
  description = "Concurrent synchronous generations for the whole deployment (the default cloud quota is 10 per model family); caps the completion function's instances."
  type        = number
  default     = 10
  validation {
    condition     = var.fm_sync_generations >= 1
    error_message = "fm_sync_generations must be at least 1."
  }
}

variable "function_zones" {
  description = "Availability zones Cloud Functions may run instances in (ru-central1 has three: a, b, d). Scaling limits are per zone."
  type        = number
  default     = 3
  validation {
    condition     = var.function_zones >= 1 && floor(var.function_zones) == var.function_zones
    error_message = "function_zones must be a whole number of at least 1."
  }
}

variable "zone_instance_quota" {
  description = "The cloud's quota of function instances per zone (10 by default), shared by all functions in the cloud: the functions' zone_instances must add up to no more (a second deployment: its share)."
  type        = number
  default     = 10
}

variable "queued_calls_per_instance" {
  description = "Calls a zone holds waiting per instance (zone_requests_limit = instances x (1 + this)) before Cloud Functions answers 429."
  type        = number
  default     = 2
  validation {
    condition     = var.queued_calls_per_instance >= 0 && floor(var.queued_calls_per_instance) == var.queued_calls_per_instance
    error_message = "queued_calls_per_instance must be a whole number of at least 0."
  }
}

variable "authorizer_cache_seconds" {
  description = "How long API Gateway caches the authorizer's verdict for one key (authorizer_result_ttl_in_seconds). With key_cache_seconds it bounds how long a revoked, rotated or expired key, or an old policy, keeps working: authorizer_cache_seconds + key_cache_seconds (40 s by default)."
  type        = number
  default     = 30
  validation {
    condition     = var.authorizer_cache_seconds >= 1 && var.authorizer_cache_seconds <= 3600 && floor(var.authorizer_cache_seconds) == var.authorizer_cache_seconds
    error_message = "authorizer_cache_seconds must be a whole number of seconds from 1 to 3600."
  }
}

variable "key_cache_seconds" {
  description = "How long an authorizer instance remembers a stored key's lookup, found or not (FM_KEY_CACHE_S). Part of the revocation bound (see authorizer_cache_seconds)."
  type        = number
  default     = 10
  validation {
    condition     = var.key_cache_seconds >= 0 && var.key_cache_seconds <= 300
    error_message = "key_cache_seconds must be from 0 to 300."
  }
}

variable "iam_propagation_s" {
  description = "Seconds each new grant waits before Terraform goes on (the provider's sleep_after, 'to compensate IAM operations delay'): the queues are created with a key minted right after ymq.admin is granted, function versions read Lockbox secrets right after the grant, triggers read queues and invoke functions right after theirs."
  type        = number
  default     = 30
  validation {
    condition     = var.iam_propagation_s >= 0 && var.iam_propagation_s <= 600 && floor(var.iam_propagation_s) == var.iam_propagation_s
    error_message = "iam_propagation_s must be a whole number of seconds from 0 to 600."
  }
}
