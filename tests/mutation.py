"""`make mutate`: mutation testing with mutmut, one module at a time, each against the tests that concern it.

    python -m tests.mutation                       # every module in MODULES that exists
    python -m tests.mutation shared/client.py      # only these
    MUTATE_JOBS=2 python -m tests.mutation ...     # forked test workers per module (default 1)

For each module a scratch copy of the repository is made under .mutmut/<module>/ with a pyproject.toml
that tells mutmut to mutate only that module and to run only its tests; mutmut then tests each mutant
in a forked child, running just the selected tests that execute the mutated function. The table at the
end (also written to .mutmut/scores.md) is what docs/testing.md's "Mutation testing" section shows: mutants,
killed (a timeout counts as killed), the survivors argued equivalent in EQUIVALENT below, and the score
killed / (mutants - equivalent). Every other survivor is printed with its diff: kill it with a test, or
argue it here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutmut"
COPIED = ("shared", "tests", "local", "functions", "events", "deploy")  # what the selected tests import or read

# module -> the tests that concern it (mutmut further narrows each mutant to the tests that run its function)
MODULES: dict[str, list[str]] = {
    "shared/client.py": ["tests/unit/test_promises_client.py", "tests/unit/test_client_and_logs.py",
                         "tests/integration/test_promises_upstream.py", "tests/integration/test_upstream_failures.py"],
    "shared/auth.py": ["tests/unit/test_auth.py", "tests/unit/test_promises_auth.py",
                       "tests/integration/test_credentials.py"],
    "shared/logs.py": ["tests/unit/test_promises_logs.py", "tests/unit/test_client_and_logs.py"],
    "shared/jobs/queue.py": ["tests/unit/test_promises_queue.py", "tests/integration/test_queue_protocol.py"],
    "shared/jobs/store.py": ["tests/unit/test_promises_store.py"],  # on the in-process stand-in (local.aws)
    "shared/jobs/operations.py": ["tests/unit/test_promises_operations.py", "tests/unit/test_operations_routing.py"],
    "shared/jobs/submit.py": ["tests/unit/test_promises_operations.py"],
    "shared/jobs/worker.py": ["tests/unit/test_promises_worker.py"],  # on the in-process stand-in and the emulator
    "shared/jobs/poller.py": ["tests/unit/test_promises_poller.py"],  # on the in-process stand-in and the emulator
    "shared/jobs/keys.py": ["tests/unit/test_promises_keys.py"],  # on the in-process stand-in
    "shared/jobs/limits.py": ["tests/unit/test_promises_limits.py"],  # on the in-process stand-in
    "shared/jobs/batches.py": ["tests/unit/test_promises_batches.py"],  # on the in-process stand-in and the emulator
    # the base modules and the pure parts of the surfaces, each against fast (unit) tests only
    "shared/routes.py": ["tests/unit/test_promises_routes.py", "tests/unit/test_config_events_routes.py",
                         "tests/terraform/test_openapi.py"],
    "shared/events.py": ["tests/unit/test_promises_events.py", "tests/unit/test_config_events_routes.py"],
    "functions/authorizer/handler.py": ["tests/unit/test_authorizer.py", "tests/unit/test_promises_authorizer.py",
                                        "tests/unit/test_promises_stored_keys.py"],
    "shared/policy.py": ["tests/unit/test_promises_stored_keys.py", "tests/unit/test_promises_authorizer.py",
                         "tests/unit/test_promises_catalog.py"],
    "shared/runtime.py": ["tests/unit/test_promises_runtime.py", "tests/unit/test_caller.py"],
    "shared/jobs/access.py": ["tests/unit/test_promises_views.py"],
    "shared/jobs/views.py": ["tests/unit/test_promises_views.py"],
    "shared/native/models.py": ["tests/unit/test_promises_native_models.py", "tests/terraform/test_openapi.py"],
    "shared/openai/catalog.py": ["tests/unit/test_promises_catalog.py", "tests/unit/test_openai_embeddings_models.py",
                                 "tests/unit/test_promises_authorizer.py", "tests/unit/test_promises_batch_lines.py"],
    "shared/openai/batch_lines.py": ["tests/unit/test_promises_batch_lines.py"],
    "shared/openai/batch_outcomes.py": ["tests/unit/test_promises_batch_outcomes.py"],
    "shared/openai/translate.py": ["tests/unit/test_promises_translate.py", "tests/unit/test_openai*.py"],
    "shared/openai/chat_response.py": ["tests/unit/test_promises_chat_response.py", "tests/unit/test_openai*.py"],
    "shared/openai/response_object.py": ["tests/unit/test_promises_response_object.py", "tests/unit/test_openai*.py"],
    "shared/jobs/usage.py": ["tests/unit/test_usage_and_prices.py", "tests/unit/test_usage_api.py",
                             "tests/unit/test_promises_usage_entries.py"],
    "shared/openai/usage_api.py": ["tests/unit/test_usage_api.py", "tests/unit/test_promises_usage_api.py",
                                   "tests/unit/test_promises_usage_routes.py"],
    # the OpenAI request bodies and the chat and embeddings operations (the latter against the in-process emulator)
    "shared/openai/models.py": ["tests/unit/test_promises_openai_requests.py", "tests/unit/test_promises_openai_chat.py",
                                "tests/unit/test_openai*.py"],
    "shared/openai/response_request.py": ["tests/unit/test_promises_openai_requests.py", "tests/unit/test_openai*.py"],
    "shared/openai/embeddings.py": ["tests/unit/test_promises_openai_embeddings.py",
                                    "tests/unit/test_promises_openai_requests.py", "tests/unit/test_openai*.py"],
    "shared/openai/chat.py": ["tests/unit/test_promises_openai_chat.py", "tests/unit/test_promises_openai_requests.py",
                              "tests/unit/test_openai*.py"],
    # the native services and the schema, door and pass-through modules, against fast tests (the emulator in process)
    "shared/native/services.py": ["tests/unit/test_promises_native_services.py"],
    # (shared/native/schemas.py, shared/openai/schemas.py and response_schemas.py declare classes and constants
    # only: no function, so 0 mutants, and mutmut stops on them ("could not find any test case"); the spec they
    # build is checked by tests/unit/test_promises_schemas.py and tests/terraform/test_openapi.py)
    "shared/openai/batch_schemas.py": ["tests/unit/test_promises_schemas.py"],
    "shared/openai/usage_schemas.py": ["tests/unit/test_promises_schemas.py"],
    "shared/jobs/doors.py": ["tests/unit/test_promises_doors.py"],
    "shared/openai/responses_upstream.py": ["tests/unit/test_promises_responses_upstream.py"],
    # the OpenAI Files and Batch API, in process (the store's stand-in, the emulator, the test clock)
    "shared/openai/files.py": ["tests/unit/test_promises_openai_files.py", "tests/unit/test_openai_batch_parts.py"],
    "shared/openai/batch_store.py": ["tests/unit/test_promises_openai_files.py",
                                     "tests/unit/test_promises_openai_batches.py",
                                     "tests/unit/test_openai_batch_parts.py"],
    "shared/openai/batch_output.py": ["tests/unit/test_promises_openai_batches.py"],
    "shared/openai/batches.py": ["tests/unit/test_promises_openai_batches.py", "tests/unit/test_openai_batch_parts.py"],
    # stored responses and the /v1/responses routes (the in-process stand-in and the emulator)
    "shared/openai/response_store.py": ["tests/unit/test_promises_responses_api.py"],
    "shared/openai/responses_api.py": ["tests/unit/test_promises_responses_api.py",
                                       "tests/unit/test_openai_responses_parts.py"],
    # the OpenAI translation: every module under shared/openai/, against every OpenAI test
    "shared/openai/*.py": ["tests/unit/test_openai*.py", "tests/integration/test_openai*.py"],
}

# The measured scores (mutants, killed, equivalent, score), the survivors left and the modules not measured yet
# are in one table, docs/testing.md's "Mutation testing" section; a run writes its own to .mutmut/scores.md.

_FIRST_WORD = ("the word is only compared with api-key and bearer: a header match is exactly two words, so every "
               "variant finds the same first one, and for the other patterns none can yield either word")

_LAST = "every way through the loop sets `last` before the error that reads it"
_FRESH = "the state is read again under the lock, which returns for a fresh token: same outcome, one lock taken"
_ASCII = "a key file is ASCII (JSON around a PEM block), which every locale encoding reads alike"

_CLARK = "ElementTree names a tag {namespace}local: at most one '}', so every split finds the same last part"
_BEFORE_QUERY = "[0] is the text before the first '?' whatever the number of splits"
_UTF8 = "str.encode's default codec is UTF-8, and codec names are case-insensitive"
_NO_TYPE = ("an absent event type then reads as 'None' or 'XXXX' instead of '': none of them ends with "
            "QueueMessage or TimerMessage, so the event is 'unknown' either way")

_OWNER = ("every record access is handed was written with created_by (JobStore.create, batch_store's file "
          "records, the response records), so the default is never read")
_FINISHED = ("a done record without an error always has result_key and result_size (JobStore.finish writes "
             "both), so the defaults are never read")
_NO_KIND = "RESPONSE_TYPES has no None or XXXX key: an item without a kind gets '' either way"
_NOT_IAM = "only `auth_mode == 'iam'` is tested, and neither default is iam"
_NATIVE = ("responses.error tests only dialect == 'openai', so an error before the path is read (bad settings, "
           "a trigger event) has the native shape with any other first value too")
_STATUS = ("every read of `status` (the summary line, the failure's log level) follows an assignment from the "
           "reply or the error: its first value is never read")
_NAME_SEGMENT = ("a resolved URI is <scheme>://<folder>/<name>[/<rest>] with no '://' before the name (the folder "
                 "has no '/'), so the part after the first '://' starts <folder>/<name> however many splits follow")
_NOT_STREAMED = ("a line with stream: true was refused just above, so request.stream is False: plan_request's "
                 "default (None: the request's own stream) is False too")
_ISSUE_KEYS = "_located reads an issue's loc, type and msg only: the url and input keys are never read"
_FUNCTION_TAG = ("a part that is exactly function-after or function-before also starts with 'function-', which the "
                 "next test skips anyway")
_DOOR_MODEL = "every batch's door record is written with a model key (openai/batches.py): the default is never read"
_BASE64_ONLY = "embeddings_answer tests only encoding_format == 'base64': every other value answers floats"
_OPENED = ("the opened item's content is replaced by [] in the same expression, so the text given to "
           "message_item is never seen")
_FIELD = ("resolve_model makes every BadRequestError with BadRequestError.field, so a field detail is always "
          "found and the default is never read")
# the OpenAI request bodies (shared/openai/models.py, response_request.py)
_X_IS_ALNUM = "X is an ASCII letter, which isalnum() takes anyway: the same names pass"
_NOT_ALSO_FINE = ("the test before it holds value != default and value is not None, so for a name also_fine lacks "
                  "`default != value` and `None != value` are both true")
_SUB_DETAILS = ("validate() raises only _bad_request's errors (every value _sub is handed is a dict), which carry "
                "one or more details, each with field and description: the fallback and the defaults are never read")
_SUB_FIELD = ("no model _sub checks has a model-level validator, so a detail's field is a path that starts with a "
              "field name: never 'body', never empty, never starting with '['")
_NAMESPACE_LENGTH = "the field's max_length=64 refuses a longer name before this check runs"
_ROLE_REQUIRED = ("ChatMessage's own schema requires role (a field without a default), so a oneOf branch that says it "
                  "again or not takes and refuses the same messages")

_PAYLOAD_JSON = ("a task's payload is read back only by json.loads (the worker), which reads \\u escapes and UTF-8 "
                 "alike: the same payload either way")
_FAILED_SIZE = ("an operation finished with an error has no result: its result_size is never read (views answer "
                "the error, and the result link is made only for a done operation without one)")
_LEDGER_ITEM = ("every ledger item is written by one UpdateItem that sets its day (and a totals item its caller) and "
                "ADDs to its set (models, callers): a read item always has them, so the default is never read")
_ALL_COUNTERS = ("add() ADDs every counter of a (model, mode) in one update, so an item that has its _req counter "
                 "(the check just above) has all of them: the default is never read")
_NO_KIND_NAMED = ("an operation without a kind takes the embeddings branch whatever its default text: none of '', "
                  "'None' and 'XXXX' is completion or classification")
_SAME_ORDER = ("each place of a group key holds one type (a string, or a bool for batch), and str(False) < "
               "str(True) as False < True: the natural order is the order of the strings")
_SAME_GROUP_LENGTH = "a group key is made from query.group_by (_group_key): both always have the same length"

# -- shared/jobs/keys.py and limits.py (against test_promises_keys.py and test_promises_limits.py, in process) --
_TWO_ROUNDS = "the loop's value is never read: it runs twice either way"
_ROTATED_DIGEST = ("`changed` is shown (_view) and copied into the authorizer's record (_lookup_fields), neither of "
                   "which has the digest: the new digest is written from `digest` itself")
_NO_NAME_GIVEN = "KeyUpdateRequest has no name field, so the fields given never include it"
_NAME_NOT_IN_SETS = ("the changes come from _policy_fields, which leaves the name out: `sets` has no name to keep or "
                     "drop")
_UNREACHABLE = "the loop above returns or raises in its second round: this line never runs"
_NAME_PARAM = ("every route that reaches _existing has {name} in its path (routes.py), so path_params always has it "
               "and the default is never read")
_DEFAULT_ENTROPY = "token_urlsafe(None) draws secrets.DEFAULT_ENTROPY bytes, which is 32"
_NAME_FROM_REQUEST = ("create's record sets name from request.name beside these fields: a name among them is the same "
                      "value, and update's fields never include it")
_NO_BOOL = ("no field of a key is a bool (pydantic reads true as 1 for the int and float limits), so _typed never "
            "gets one")
_SAME_NUMBER = ("the Document API keeps a number's value, not its text: 2, '2.', '2.000000' and '.5' are read back as "
                "the same numbers")
_KEY_CREATED = "create writes created_at into every key record, so the default is never read"
_CLAIM_DECIDES = ("a80/a100 as read only spare a claim that would fail: claim_alert's conditional write decides who "
                  "sends, so a threshold already claimed is not sent again either way (one more write)")
_POST_DEFAULT = "urllib sends a Request with data as a POST when no method is given"
_HEADER_CASE = "urllib.request.Request stores header names capitalized (Content-type) whatever their case"
_FINISH_SETTINGS = "Settle.finish reads no settings (only commit, for the real usage, and the alerts do)"
_RECORD_JSON = "a job's reservation record is read back only by json.loads (from_record): spaces or none, the same data"
_JOB_EXPIRY = ("a reservation read back from a job's record is only settled or released, which never read its expiry "
               "(only the admission that wrote it did)")
_JOB_MODEL = "a job has at least one payload with its model (submission refuses an empty one): `model or ...` sets it"
_CLAIMED_AT = "a80/a100 are only ever written as the time of their claim, so they are never 0 or 1"
_SEEN_HAS = ("every `seen` an alert is sent from was built with set_t, set_m, a80 and a100: the defaults are never "
             "read")
_SAME_KIND = "`X if kind == X else kind` is kind either way"
_COMPLETION_PATH = ("worst_case tells only embedding and classification apart: any other kind takes the completion "
                    "path")
_ADDS_ZERO = "with real == (0, 0) the write ADDs zeros: the same item either way"
_HELD_FALSY = "_update tests `held` for truth only: None is as false as False"
_NO_CODE_SAME = ("only a ClientError carries a code here: without one, every variant finds no ConditionalCheckFailed "
                 "(or fails reading it) and the error ends in the same warning")
_TYPE_NAME = "an exception type's name is far shorter than 100 characters"
_REVOKED_VIEW = "_view reads `now` only for a key that is not revoked: a revoked key is 'revoked' at any time"
_FLOOR_MINUTE = ("for a positive float t, t / 60 is correctly rounded and its distance below the next whole number is "
                 "at least ulp(t) / 60, more than half an ulp of t / 60: it never rounds up to it, so int(t / 60) == "
                 "t // 60 (also checked at 2 million minute ends)")
_NUMBER_STRIP = "rstrip takes a set of characters, and 'X' never occurs in a formatted number"
_ALWAYS_SOME = ("every reservation has a policy (reserve asserts one; from_record makes one) and every `seen` holds the "
                "item's counters (_seen, _try_reserve and _explain_refusal build it with them), so `policy is None` "
                "and `not seen` are never true; a policy without budgets gives no fraction and never `exhausted` "
                "(only a budget's refusal passes it): nothing is sent either way")
_BUDGET_FRACTION = ("the keys API bounds monthly_tokens >= 1 and monthly_budget >= 1e-6 (budget_nano >= 1000): past the "
                    "guard one of them gives a fraction, so the default is never read")
_MARK_TRUTH = "the claim mark in `seen` is only tested for truth: 2 is as set as 1"
_DECIMAL_NONE = "Decimal('None') raises InvalidOperation, an ArithmeticError, which answers 0 as an absent value does"
_NUM_WRITTEN = ("every attribute _num reads is written by this module as a number (or is absent), so none fails to "
                "convert")
_ITEM_NAMES = ("of the month item's attributes (id, used_t/m, set_t/m, expires_at, v_<rid>_<part>, a80, a100, "
               "r<minute>, k<minute>) only the per-minute counters begin with r or k, none with X, and a minute has "
               "many digits")
_LAST_ROUND = "the loop breaks, returns or raises by round_ == CONFLICT_ROUNDS, so it never reaches one more"
_ALL_NEW = "an UpdateItem with ReturnValues ALL_NEW that succeeded always answers Attributes"
_USED_UNREAD = ("nothing reads used_t or used_m from the admission's `seen` (the alerts read set_t, set_m, a80 and "
                "a100; the headers r and k)")
_PAYLOAD_MODEL = ("every job payload names its modelUri (completion and classification bodies, embedding chunks, a "
                  "batch's native request bodies, a background response's native body), so the default is never read")
_STORE_CACHED = ("finish_request runs in the invocation whose admission made the instance's store (job_store caches it), "
                 "so job_store hands back that store whatever it is given")
_FINISH_GUARD = ("nothing in finish_request's try raises: job_store hands back the store the admission made, for_request "
                 "and Settle() only build objects, and Settle.finish catches every error itself (the warning is a "
                 "guard)")
_INV_RESERVATION = "runtime.Invocation declares reservation (None by default), so every invocation has it"
_X_SAFE = "'X' is a letter, which quote never escapes: safe='XXXX' adds nothing"
_FLAG_ONLY = "only the flag is read, and it does not depend on the default"
_TOKEN_MONEY = ("money reads kind only to tell a classifier and units only for one: this call prices the tokens of a "
                "kind that is not classification")
_CLASSIFIER_MONEY = "a classifier's money reads its model, units and prices only (it bills units, in no mode)"
_DONE_TRUTH = "done is only tested for truth: None is as false as False"
_REAL_EMPTY = "real is only read as `self.real or (0, 0)` until commit sets it: '' is as empty as None"
_TABLE_SET = "every caller of _update puts the store's table over this placeholder"
_KIND_BY_MODEL = ("real_usage reads kind only to tell a classification, which it tells by the entry's model (cls://) "
                  "first: a reservation of kind classification settles only a classifier's entries")
_A100_AT_ADMISSION = ("an admission that succeeded left room for its worst case, so what is settled is under 100% "
                      "unless it reserved no tokens (an embedding of no text at exactly the budget); then a100 misread "
                      "as unset costs one claim, which fails (claim_alert's conditional write decides)")
_SYSTEM_SAME = "`'system' if role in (...) else role` is 'system' for the role 'system' either way"
_CALL_TURN_WHERE = ("translate.native_messages never reads the where of an assistant turn with calls (it names the "
                    "calls' own fields, where and id_where)")
_TOOL_TURN_WHERE = ("translate.native_messages names a tool turn by its call_id_where only: it never refuses a tool "
                    "turn's text")
_STR_AS_IS = "_text hands back a str as it is"
_TEXT_ROLE = "_text reads its role only to take an assistant's refusal parts: any other role is alike"
_INSTRUCTIONS_WHERE = ("the instructions' turn is made only when they are not blank, and native_messages refuses a "
                       "turn by its where only when it is blank")
_INPUT_WHERE = "every input item carries its own _where (_input_items sets one on each), so the label is never read"
_CHOICE_OFFERED = "_choice never reads `offered`"
_URI_NAME = ("the folder and the name of a model URI hold no '/' (services._URI), so a second '://' can only follow "
             "the name: the second piece still begins with <folder>/<name>")
_FORTY_POLLS = ("the functions create the table with poll_s 3, where int(121 / 3) == int(120 / 3) == 40; the local "
                "stand-in's provisioning passes a short poll for a table moto makes at once, so its bound is never met")
_CHECKSUM_CASE = "the client resolves the checksum settings lower-cased: its config reads 'when_required' either way"
_S3V4_DEFAULT = ("botocore signs an S3 client with s3v4 when none is named: the client's signature_version is s3v4 "
                 "either way")
_BATCH_RESPONSES = ("a BatchGetItem answer always has Responses, with a list for each table asked (empty when nothing "
                    "was found); one that reads nothing is refused as throttled instead")
_PATIENT_TRUTH = "add_usage tests `patient` for truth only: None is as false as False"


# -- shared/jobs/store.py (against tests/unit/test_promises_store.py on the in-process stand-in) --
_KEYWORD_CASE = ("an expression's keywords (SET, ADD, DELETE, AND, OR, NOT) are read in any case by DynamoDB's "
                 "expression grammar, which the Document API implements (moto, the stand-in, too); names and "
                 "placeholders in these literals are lower-case already")
_STORE_EXPRESSIONS = (
    '"DELETE ops :op"', '"SET "', '"SET #state = :done, outcome = :outcome, failed = :failed"',
    '"SET #state = :queued, last_error = :reason, lease_until = :now"', '" ADD deferrals :one"',
    '"#state = :running AND worker = :worker"', '"SET last_error = :reason, modified_at = :now"',
    '"ADD dead_letter_resends :one"', '"attribute_exists(id) AND #state <> :done"',
    '"SET #state = :done, modified_at = :now, #error = :error"',
    '"SET #state = :done, modified_at = :now, result_key = :key, result_size = :size"',
    '"ADD #set :values SET expires_at = if_not_exists(expires_at, :expires)"', '"DELETE #set :values"',
    '"attribute_exists(id) AND (attribute_not_exists(#marks) OR "', '"NOT contains(#marks, :one))"',
    '"ADD ops :op"', '"ADD attempts :one"', '"SET #state = :running, modified_at = :now"',
    '"SET #state = :running, worker = :worker, lease_until = :until, started_at = :now, expires_at = :expires "',
    '"attribute_not_exists(id) OR #state = :queued OR (#state = :running AND lease_until < :now)"',
    '"SET #state = :done, result_key = :key, modified_at = :now"', '"SET modified_at = :now ADD tasks_done :one"')
_NO_CODE = ("botocore gives every ClientError an Error.Code (the HTTP status when the body names none), so the "
            "default is never read")
_CLIENT_ERROR = "only a ClientError gets this far (its code was checked first), and it always has .response"
_NEVER_ABSENT = ("a task record always has attempts (every claim ADDs it) and a running one lease_until (the claim "
                 "sets it), and a missing deferrals is 0 either way (`or 0`); clock times are far past 1")
_ONE_CLAUSE = "an item key is <op>#i<n> and an operation id has no '#', so '#i' occurs once and every split agrees"

_NO_ERROR_TEXT = ("a stopped batch without an error text reads as None, and the mutated text is no JSON, which reads as "
                  "None too (the ValueError branch): CANCELLED either way")
_DOOR_INV = ("the only door, shared/openai/batch_output.py, never reads the invocation its advance and settle are "
             "handed (they read and write the store only)")
_POLL_ITEMS_TOTAL = ("only a batch's record is read for items_total, and every batch is created with it (shared/jobs/batches.py "
                     "submit's numbers), so the default is never read")
_COUNTED = ("_poll_batch hands _finish_batch the operation merged with the counts it has just made from the request "
            "records (items_done, items_failed), so the default is never read")
_ITEM_RECORD = ("a request's record is written with next_poll_at and polls (JobStore.item_started), and one without "
                "them is done (item_finished), which the test before skips: the default is never read")
_BATCH_NUMBERS = ("every batch is created with items_done and items_failed (shared/jobs/batches.py submit's numbers), "
                  "so the default is never read")
_FINISH_DONE = ("store.finish only acts on a job that is not done (its condition): for a done one it writes nothing and "
                "returns False (no count, no log line), and the record read again is the one handed in")
_BOUND = ("process binds operation_id to every line it logs (logs.bind, before the try), so the line names the "
          "operation whatever this key is")
_TRIGGER_BODY = ("every message of a Message Queue trigger event carries details.message.body (the trigger's event shape; "
                 "local/triggers.ymq_event builds the same): the default only matters for an event the platform never "
                 "sends")
_HAS_KIND = ("every operation record is written by JobStore.create with its kind, and the worker reads only records "
             "it found, so the default is never read")
_OR_ZERO = "a missing count is None or 0 before `or 0`, which makes either 0"
_DETAILS = ("a message reaches dead_letter only when its details name a dead-letter queue (consume reads queue_id "
            "from them), so they are there and the default is never read")
_CREATED = ("JobStore.create writes tasks_total, tasks_done and created_at into every operation record, so these "
            "defaults are never read")
_EPOCH = ("a missing time reads as 0 or 1 s after the epoch either way: both are long before now and before any "
          "created_at, so the max() and the comparison with now come out the same")
_READ_BODY = ("the attributes are read only for a message whose body was a job reference, and consume took that body "
              "from details.message: the message is there, so the default is never read")
_LAST_OR = "`last` is read only as `last or \"dead-letter handling failed\"`, where '' and None are alike"
_NO_SIZE = "JobStore.finish writes a result size only with a result; with an error the size is never written"
_MERGED = ("responses are merged only for an operation of several tasks, and only embeddings are split into tasks: "
           "the kind is embedding, which RESPONSE_TYPES has, so the default is never read")
_SAME_LENGTH = ("services.fan_out returns one result per item, in order, or raises: the two lists always have the "
                "same length, so strict is never tested")

# Survivors that no test can kill, because the mutant behaves exactly as the original. Each entry is
# (original text, mutated text, why[, function]): a survivor matches when its diff turns the one into the
# other (in that function only, when one is named).
# -- shared/openai/files.py, batch_store.py, batch_output.py, batches.py (the OpenAI Files and Batch API) --
_FILE_PARAM = ("the routes /v1/files/{file_id}[/content] always bind file_id (routes.resolve), so the default is "
               "never read")
_ONE_STORE = ("job_store returns the instance's one store, made on first use: owned_file (or owned_batch) made it with these "
              "settings just before (a 404 stops earlier), so the argument is never read here")
_FILE_RECORD = ("every file record is written by batch_store.save_file, with bytes, content_type and object_key "
                "files/<id> (the key the fallback names too): the defaults and fallbacks are never read")
_HTTP_ONLY = ("a route is served only for an HTTP request (runtime.serve parses one before routing), so "
              "inv.request is never None here")
_TASKS_TOTAL = ("every job record is written by JobStore.create, with tasks_total (0 for an invalid batch's): the "
                "default is never read")
_COUNTED_ONCE = ("store.add_once adds a task's counts only if its mark is not in oa_counted yet (a conditional update), "
                 "so a task read again is not counted again: the set read here only spares the result's read")
_MARK_SET = ("the name of the mark set add_once keeps: every call names the same one, and it is read back only by "
             "the `counted` shortcut argued above (_COUNTED_ONCE)")
_RESULT_ONCE_DONE = ("a task record becomes done only through JobStore.complete, which sets the state and result_key in "
                     "one update, so `not result_key` already skips every task that is not done (and a task with a "
                     "result_key is done)")
_TASK_RESULT = ("an embedding task's result is written only by the worker, as {\"requests\": [...]}: the default is "
                "never read")
_TASKS_DONE = "every job record is written by JobStore.create with tasks_done 0, so the default is never read"
_STALE_ROUND = ("the operation was read at the start of this poller round: a record read again differs only if a task "
                "finished since, and then the next round (every minute) finds it done; the caller's view is the same")
_RECORDS_HANDED = ("the poller hands a chat batch's settle its item records (both calls are in poller._poll_batch), "
                   "so the store read for records=None is never made; the requests read more often only names again "
                   "the custom ids the records already carry")
_ITEMS_TOTAL = "every batch's job record is written by JobStore.create with items_total, so the default is never read"
_RETURN_IGNORED = ("the poller reads settle's return only for a job that is not a batch (_sweep_job); a chat batch's "
                   "(poller._poll_batch) is ignored, so returning the tuple for it too changes nothing")
_NATIVE_KEPT = ("oa_settled is set after oa_native_key and oa_native_size were written for every job that is not a batch "
                "(one set_fields before it): the defaults are never read")
_SETTLE_FRESH = ("the poller hands settle the operation it read this round; read again, it differs only when another "
                 "poller settled it meanwhile, and settling twice writes the same files (ids chosen once, each record "
                 "written once)")
_DOOR_FIELDS = "every OpenAI batch's job record is written with its `oa` fields (batches.create), so the default is never read"
_STOPPED_WITH_ERROR = ("settle runs before the finish for a job whose work completed (its state is not done yet), and a "
                       "job whose state is done was stopped with an error: `or` and `and` agree on every record")
_OUR_IDS = ("our file ids are 29 characters (new_file_id): no record has an id of 64 or 65, and one that does not "
            "start with file- is not a file record either way")
# -- shared/openai/response_store.py and responses_api.py (h-responses) --
_KEYED = ("every response record a route reads its document through or deletes was written by save() with "
          "object_key = object_key(id) (upstream's records, which have none, are forwarded or refused first), so "
          "found.get('object_key') is that key: the fallback is never evaluated, and a mutant that falls back "
          "names the same key")
_DOCUMENT_JSON = ("a response's document is read back only by json.loads (response_store.document), which reads \\u "
                  "escapes and raw UTF-8, and any separators, alike: the same document either way")
_CANCELLED = ("response_object.failed writes an error only for state 'failed': a cancelled response has error None, "
              "so the code and message it is handed are never read")
_ROUTE_PARAM = ("every route that reads a stored response has {response_id} in its path (shared/routes.py), so the "
                "parameter is always there and the default is never read")
_OVERRIDDEN = ("every use of the skeleton sets a status over it (finished, failed, stream_events' in_progress, "
               "_background's queued; a batch line's answer is finished or failed): the skeleton's own is never seen")
_PENDING_JOB = ("settle is handed only a record whose status is queued or in_progress, which only a background "
                "response's record has, and _background writes every such record with its job: the job is always "
                "there")
_EXPIRES = ("save() writes expires_at on every response record, and a missing one would read as 0, None or 1, each "
            "long before now: expired either way")

_STORE_OUR_IDS = ("add_to_list and save_file are handed only our ids (new_file_id's, and batches.create's "
                  "batch_id(new_batch_job_id())), whose time created_ms reads, so the clock's fallback is never read")
_STORE_DELETED = ("delete_file is handed only file records (files.py's owned_file), and save_file writes created_by and "
                  "object_key into every one, object_key being files/<id>, the fallback's own text: the same key and "
                  "owner either way")
_NO_EXPIRY = "a record without expires_at (or with 0 or None) reads as 0 or 1, both long past: expired either way"
_RANDOM_13 = "[:13] keeps 13 random hex digits of 7 bytes' 14 or 8 bytes' 16 alike"
_WHOLE_HOURS = ("the walk visits start - k hours and end_ms is start less the TTL and an hour, a whole number of hours "
                "(JOBS_TTL_DAYS x 86,400,000 ms): 1 ms lower admits no other k")
_LAST_HOUR = ("the walk's last hour, at end_ms, holds ids made more than the TTL before now; their records expire at "
              "most the TTL after the id (save_file: created + ttl; JobStore.create: the write's time + ttl, the write "
              "following the id by milliseconds), so all are past expires_at and skipped either way, bar a record "
              "written across an hour's turn in the milliseconds after its id was made")
_SAME_NOW = ("`now` is clock.now() read at the start of the same call: reading it again moves the expiry cut by the "
             "call's own milliseconds, in which a record at its last second may be listed or not alike")
_CHAT_STOPS = ("a chat or Responses batch (kind batch) is settled with a job error only when it was cancelled (1) or "
               "expired (4), for which not_run writes fixed text: a dead-lettered chunk fails its own requests and the "
               "batch goes on (worker._dead_chunk), and a batch the queue refused ends deactivated, never settled "
               "(submit_tasks); so the error handed on is never read")
_SETTLED_FLAG = "oa_settled is only read for its truth (batches.status, batch_object, settle): 1 and 2 alike"
_ONE_WRITE = ("parse_form hands python-multipart the whole body in one write(), and within one write it calls each "
              "callback once per header field, header value and part body (checked on a 93 kB body of near-boundary "
              "bytes), so `=` and `+=` agree")
_NO_FORM_TYPE = ("Request.header lower-cases the name it is asked for; a missing Content-Type read as None, '' or 'XXXX' "
                 "is no multipart/form-data either way (python-multipart reads None and '' alike): the same 400")
_LIST_FILLED = "`if not ended` asks only whether on_end appended something: None and False fill the list too"
_BATCH_PARAM = ("the routes /v1/batches/{batch_id}[/cancel] always bind batch_id (routes.resolve), so the default is "
                "never read")
_PARAM_DEFAULT = "_problem's param defaults to None: passing None or nothing is the same"
_LINE_FIELD = ("every ApiError the line parsers raise names a field: validate's _bad_request gives each issue one ('body' "
               "at the root), BadRequestError.field names one, and catalog.resolve's 400 and 403 name `model`; so the "
               "field is always found, and never empty")
_COUNTS_DEFAULT = ("every reader of a batch record's items_total, items_done and items_failed (batches.status, "
                   "batch_object, views.batch_view, the poller's counts) reads them with a default of 0: a record "
                   "written without them, or under another name, reads the same")
_ERROR_SIZE = "JobStore.finish with an error writes the error only: the result size is never stored"
_ASCII_FLAG = "json.dumps tests ensure_ascii for its truth: None and False alike"
_OA_BATCH_RECORD = ("every batch record is written by batches.create with items_total, items_done and items_failed (0 for "
                    "an invalid file's), and by JobStore.create with id, created_at and modified_at: these defaults are "
                    "never read")
_OA_DOOR_JSON = ("every batch's door JSON (`oa`) is written by batches.create with endpoint and input_file_id, and "
                 "batch_object is handed only records of door openai (owned_batch, the listing's batch records, the "
                 "record create just wrote): the defaults are never read")
_JOB_ERROR = "every job error is written with a message (each finish call and the views' errors): the default is never read"
_SETTLED_FIELDS = ("settle writes oa_settled_at, oa_completed and oa_failed in the write before oa_settled, and they are "
                   "read only for a settled batch (the counts under `if oa_settled`; settled_at only for expired and "
                   "cancelled, which status gives only once settled): the defaults are never read")
_UPSTREAM_METADATA = ("upstream's batch metadata always names taskStatus (the reference: metadata = {taskId, taskStatus, "
                      "completedBatches, totalBatches}); the default, the status recorded before, differs from these "
                      "only for a first answer without one, which upstream does not give")
_NONE_OR_ZERO = "`x or 0` reads an absent count, None or 0 alike: 0"
_STORE_ERROR_TEXT = ("a budget sweep fails with the store's own errors (StoreError 'job store: <code>', a botocore "
                     "class's name), far under 300 characters: the cut never bites")
_CREATED_RECORD = ("every job record is written by JobStore.create, with kind, modified_at and tasks_total; a running "
                   "task's record always has lease_until (JobStore.claim sets it with the state); and requeued_at is "
                   "read against a threshold of seconds from now (epoch seconds): 0 and 1 alike are long past")
_PACER_CALL = ("the call settings made here go only to the pacer, which reads their deadline; upstream gets the request "
               "id with inv.call")
_UPDATE_ONLY = ("item_finished from running updates state, outcome and failed only: the custom id is written only when "
                "the record is made (from_state None), which this call never asks for")
_PARSED_AGAIN = "the outcome text is parsed again (json.loads) before any use: with escapes or without, the same value"
_FIRST_DEADLINE = ("the first deadline a run meets ends it: the remaining time only falls, so poll()'s own check before "
                   "the next operation fails too; the count is 0 before it (bar a pacer refusal followed, within one "
                   "operation, by the time running out), so = 1 and += 1 agree")
_SAME_RECORDS = ("the records handed on are the batch's item records just read for this round; with None, the door's "
                 "settle reads the same records again (_chat_outcomes)")
_DONE_REFUSED = ("JobStore.finish is conditioned on state <> done: for an operation already done it changes nothing and "
                 "returns False, so without the state check the late one is only asked again, to the same effect")
_FALSY_DEACTIVATE = "finish tests deactivate for its truth: None and False alike"
_BOUND_ID = ("the worker binds operation_id to its log lines for the message it runs (logs.bind in consume), so "
             "the line carries it either way")
_ASCII_RESPONSE = ("the assembled embeddings response holds ASCII only (its type name, numbers, upstream's model version): "
                   "escaped or not, the same bytes")
_DONE_FINALIZED = ("without the state check a done operation goes on: its tasks are counted and, all done, its response "
                   "is assembled, but JobStore.finish is conditioned on state <> done and refuses it, so the operation "
                   "and its answer stay as they were (bar an unreferenced response object for a cancelled multi-task "
                   "embedding job, which the bucket's lifecycle rule removes)")
_TRIGGER_SHAPE = ("every message a Message Queue trigger hands the function has details.queue_id and details.message "
                  "(the trigger event's shape, docs and events/): the defaults are never read")
_KIND_FROM_RECORD = ("process takes the kind from the job's record, which JobStore.create always writes, and dead_letter "
                     "from _queue_kind(operation): the trigger's kind is never read")
_SAVED_FILE = ("file_object is handed only file records (files.py: the record save_file returns, owned_file's record "
               "of kind file, and the list's records), and save_file is the only writer of a record of kind file: it "
               "writes bytes, created_at, expires_at, filename and purpose into every one, so these defaults are "
               "never read")

EQUIVALENT: dict[str, list[tuple[str, ...]]] = {
    "shared/client.py": [
        ("idempotent=False", "idempotent=None", "only `not idempotent` is read, and None is as falsy as False"),
        ("ensure_ascii=False", "ensure_ascii=None", "json.dumps only tests ensure_ascii for truth"),
        ("reauthenticated = False", "reauthenticated = None", "only `not reauthenticated` is read"),
        ('"x-request-id"', '"X-REQUEST-ID"', "requests' response headers are a case-insensitive dict"),
        ('getattr(current, "args", ())', 'getattr(current, "args", None)',
         "every exception has .args, so the default is never used"),
        ('getattr(current, "args", ())', 'getattr(current, "args", )', "the same: the default is never used"),
        ("body = None", 'body = ""', "either way the body is not a dict and the plain-text branch is taken"),
        ("self._next = 0.0", "self._next = 1.0",
         "the first slot is max(now, _next); monotonic() counts from boot, so now is past both 0 and 1 s"),
    ],
    "shared/auth.py": [
        ('last = ""', "last = None", _LAST), ('last = ""', 'last = "XXXX"', _LAST),
        ("if context is not None else None", "if (context is not None) or True else None",
         "getattr(None, 'token', None) is None as well"),
        ("if value is not None else None", "if (value is not None) or True else None",
         "float(None) raises TypeError, which is caught and gives None as well"),
        ('if body.get("expiresAt") else None', 'if (body.get("expiresAt")) or True else None',
         "parse_rfc3339(None) is None as well"),
        ("creds = _cached", "creds = None",
         "the cache is read again under the lock and gives the same credentials; only the lock is taken"),
        ("session.trust_env = False", "session.trust_env = None", "requests only tests trust_env for truth"),
        ('if self.state == "fresh"', 'if self.state == "XXfreshXX"', _FRESH),
        ('if self.state == "fresh"', 'if self.state == "FRESH"', _FRESH),
        ('encoding="utf-8"', "encoding=None", _ASCII), ('encoding="utf-8"', 'encoding="UTF-8"', _ASCII),
        ('pem.find("-----BEGIN")', 'pem.rfind("-----BEGIN")', "a key holds one BEGIN line, so both find the same"),
        ("logs.register_secret(token)", "logs.register_secret(None)",
         "a signed JWT always has the eyJ….….… shape, which the JWT pattern removes whole anyway", "signed_jwt"),
    ],
    "shared/logs.py": [
        ("split(None, 1)[0]", "split(None, )[0]", _FIRST_WORD),
        ("split(None, 1)[0]", "rsplit(None, 1)[0]", _FIRST_WORD),
        ("split(None, 1)[0]", "split(None, 2)[0]", _FIRST_WORD),
        ("json_ensure_ascii=False", "json_ensure_ascii=None", "passed on to json.dumps, which only tests it for truth"),
        ('"{message}{name}"', '"XX{message}{name}XX"',
         "python-json-logger takes only the {field} names from the format; text around them never reaches the line"),
        ('(level or "INFO")', '(level or "XXINFOXX")', "an unknown name falls back to logging.INFO: the same level"),
        ('(level or "INFO")', '(level or "info")', "upper() makes it INFO again"),
    ],
    "shared/routes.py": [
        ('path.split("?", 1)[0]', 'path.split("?", )[0]', _BEFORE_QUERY),
        ('path.split("?", 1)[0]', 'path.split("?", 2)[0]', _BEFORE_QUERY),
    ],
    "shared/events.py": [
        ('text.encode("utf-8", errors="surrogatepass")', 'text.encode(errors="surrogatepass")', _UTF8),
        ('text.encode("utf-8", errors="surrogatepass")', 'text.encode("UTF-8", errors="surrogatepass")', _UTF8),
        ('.get("event_type", "")', '.get("event_type", None)', _NO_TYPE),
        ('.get("event_type", "")', '.get("event_type", )', _NO_TYPE),
        ('.get("event_type", "")', '.get("event_type", "XXXX")', _NO_TYPE),
        ('event.get("httpMethod") or "GET").upper()', 'event.get("httpMethod") or "get").upper()',
         "upper() makes it GET again"),
    ],
    # the authorizer with stored keys (its signed GetItem included)
    "functions/authorizer/handler.py": [
        ('os.environ.get("CALLER_KEY_SHA256", "")', 'os.environ.get("CALLER_KEY_SHA256", "XXXX")',
         "an unset variable then reads as one entry, XXXX, whose digest part is not 64 characters: skipped, so "
         "nobody is let in, as with ''"),
        ("caller = None", 'caller = ""', "only `if caller` reads it, and '' is as falsy as None", "handler"),
        ('lower.get("authorization", "")', 'lower.get("authorization", None)',
         "only `if authorization` reads it, and None is as falsy as ''"),
        ('lower.get("authorization", "")', 'lower.get("authorization", )', "the same: the default is only tested for truth"),
        ('os.environ.get("DOCAPI_ENDPOINT", "")', 'os.environ.get("DOCAPI_ENDPOINT", None)',
         "only `if not endpoint` reads an unset one, and None is as falsy as ''"),
        ('os.environ.get("DOCAPI_ENDPOINT", "")', 'os.environ.get("DOCAPI_ENDPOINT", )',
         "only `if not endpoint` reads an unset one, and None is as falsy as ''"),
        ('os.environ.get("FM_KEY_CACHE_S", "") or 10', 'os.environ.get("FM_KEY_CACHE_S", None) or 10',
         "`or 10` makes None 10 again"),
        ('os.environ.get("FM_KEY_CACHE_S", "") or 10', 'os.environ.get("FM_KEY_CACHE_S", ) or 10',
         "`or 10` makes None 10 again"),
        ('os.environ.get("JOBS_TABLE", "") or "jobs"', 'os.environ.get("JOBS_TABLE", None) or "jobs"',
         "`or 'jobs'` makes None 'jobs' again"),
        ('os.environ.get("JOBS_TABLE", "") or "jobs"', 'os.environ.get("JOBS_TABLE", ) or "jobs"',
         "`or 'jobs'` makes None 'jobs' again"),
        ('os.environ.get("AWS_ACCESS_KEY_ID") or ""', 'os.environ.get("AWS_ACCESS_KEY_ID") or "XXXX"',
         "with no key ID set the store refuses the lookup whatever ID is signed for (no key is named XXXX): the "
         "invocation fails alike; only the store's error name in the error line may differ"),
        ('os.environ.get("AWS_SECRET_ACCESS_KEY") or ""', 'os.environ.get("AWS_SECRET_ACCESS_KEY") or "XXXX"',
         "with no secret set, a signature made with '' or with XXXX is as wrong: the store refuses both "
         "(InvalidSignatureException) and the invocation fails alike"),
        ('method="POST"', 'method="post"', "botocore upper-cases the method it signs, and the request goes out "
                                           "through session.post whatever the AWSRequest says"),
        ('"Content-Type": "application/x-amz-json-1.0"', '"content-type": "application/x-amz-json-1.0"',
         "header names are case-insensitive (RFC 9110 5.1): SigV4 signs them lower-cased, the store reads any case"),
        ('"Content-Type": "application/x-amz-json-1.0"', '"CONTENT-TYPE": "application/x-amz-json-1.0"',
         "header names are case-insensitive (RFC 9110 5.1): SigV4 signs them lower-cased, the store reads any case"),
        ('"X-Amz-Target": "DynamoDB_20120810.GetItem"', '"x-amz-target": "DynamoDB_20120810.GetItem"',
         "header names are case-insensitive (RFC 9110 5.1): SigV4 signs them lower-cased, the store reads any case"),
        ('"X-Amz-Target": "DynamoDB_20120810.GetItem"', '"X-AMZ-TARGET": "DynamoDB_20120810.GetItem"',
         "header names are case-insensitive (RFC 9110 5.1): SigV4 signs them lower-cased, the store reads any case"),
        ('.get("__type", "")).rsplit("#", 1)[-1]', '.get("__type", "")).rsplit("#", )[-1]',
         "the Document API's __type is <namespace>#<name>, one '#': every split finds the same last part"),
        ('.get("__type", "")).rsplit("#", 1)[-1]', '.get("__type", "")).split("#", 1)[-1]',
         "the Document API's __type is <namespace>#<name>, one '#': every split finds the same last part"),
        ('.get("__type", "")).rsplit("#", 1)[-1]', '.get("__type", "")).rsplit("#", 2)[-1]',
         "the Document API's __type is <namespace>#<name>, one '#': every split finds the same last part"),
        ('float(value) if kind == "N" else value', 'float(value) if (kind == "N") and False else value',
         "every number the lookup reads goes through int() or float() again (KeyPolicy.from_record, the expiry "
         "check), which read the store's canonical number text (what shared/jobs/keys.py wrote) alike"),
        ('float(value) if kind == "N" else value', 'float(value) if kind == "XXNXX" else value',
         "every number the lookup reads goes through int() or float() again (KeyPolicy.from_record, the expiry "
         "check), which read the store's canonical number text (what shared/jobs/keys.py wrote) alike"),
        ('float(value) if kind == "N" else value', 'float(value) if kind == "n" else value',
         "every number the lookup reads goes through int() or float() again (KeyPolicy.from_record, the expiry "
         "check), which read the store's canonical number text (what shared/jobs/keys.py wrote) alike"),
    ],
    "shared/policy.py": [
        ("self._entries.popitem(last=False)", "self._entries.popitem(last=None)",
         "OrderedDict.popitem only tests `last` for truth, and None is as falsy as False"),
        ("if not isinstance(raw, str) or not raw:", "if not isinstance(raw, str) and not raw:",
         "the authorizer context comes from a JSON event: a value that is not a string is a number, bool, list, "
         "dict or null, which json.loads refuses (TypeError, caught: None) or which is falsy (None either way)"),
    ],
    "shared/jobs/access.py": [
        ('item.get("created_by", "")', 'item.get("created_by", None)', _OWNER),
        ('item.get("created_by", "")', 'item.get("created_by", )', _OWNER),
        ('item.get("created_by", "")', 'item.get("created_by", "XXXX")', _OWNER),
    ],
    "shared/jobs/views.py": [
        ('int(item.get("result_size", 0))', 'int(item.get("result_size", 1))', _FINISHED),
        ('item.get("result_key", "")', 'item.get("result_key", None)', _FINISHED),
        ('item.get("result_key", "")', 'item.get("result_key", )', _FINISHED),
        ('item.get("result_key", "")', 'item.get("result_key", "XXXX")', _FINISHED),
        ('RESPONSE_TYPES.get(item.get("kind", ""), "")', 'RESPONSE_TYPES.get(item.get("kind", None), "")', _NO_KIND),
        ('RESPONSE_TYPES.get(item.get("kind", ""), "")', 'RESPONSE_TYPES.get(item.get("kind", ), "")', _NO_KIND),
        ('RESPONSE_TYPES.get(item.get("kind", ""), "")', 'RESPONSE_TYPES.get(item.get("kind", "XXXX"), "")', _NO_KIND),
    ],
    "shared/runtime.py": [
        ('auth_mode: str = "api_key"', 'auth_mode: str = "XXapi_keyXX"', _NOT_IAM, "_caller"),
        ('auth_mode: str = "api_key"', 'auth_mode: str = "API_KEY"', _NOT_IAM, "_caller"),
        ("client = _client", "client = None",
         "the instance's client is read again under the lock and is the same one; only the lock is taken"),
        ('ref.partition(":")', 'ref.rpartition(":")', "an operation is named module:function, with one colon"),
        ('getattr(context, "request_id", "")', 'getattr(context, "request_id", None)', "str(None or '') is '' as well"),
        ('dialect = "native"', "dialect = None", _NATIVE),
        ('dialect = "native"', 'dialect = "XXnativeXX"', _NATIVE),
        ('dialect = "native"', 'dialect = "NATIVE"', _NATIVE),
        ("status = 500", "status = None", _STATUS, "serve"),
        ("status = 500", "status = 501", _STATUS, "serve"),
        ('request.header("x-client-request-id")', 'request.header("X-CLIENT-REQUEST-ID")',
         "HttpRequest.header lower-cases the name it is asked for"),
    ],
    "shared/openai/catalog.py": [
        ('== "field"), err.message)', '== "field"), None)', _FIELD),
        ('== "field"), err.message)', '== "field"), )', _FIELD),
        ('.split("/", 1)[0]', '.split("/", 2)[0]', "[0] is the text before the first '/' whatever the number of splits"),
        ('.split("/", 1)[0]', '.split("/", )[0]', "[0] is the text before the first '/' whatever the number of splits"),
    ],
    "shared/openai/batch_lines.py": [
        ('.decode("ascii")', '.decode("ASCII")', "codec names are case-insensitive"),
        ('model_uri.split("://", 1)[1]', 'model_uri.split("://", )[1]', _NAME_SEGMENT),
        ('model_uri.split("://", 1)[1]', 'model_uri.split("://", 2)[1]', _NAME_SEGMENT),
        ('int(result.get("numTokens", 0) or 0)', 'int(result.get("numTokens", None) or 0)', "`or 0` makes None 0 again"),
        ('int(result.get("numTokens", 0) or 0)', 'int(result.get("numTokens", ) or 0)', "`or 0` makes None 0 again"),
        ("response_id, stream=False)", "response_id, stream=None)", _NOT_STREAMED),
        ("response_id, stream=False)", "response_id, )", _NOT_STREAMED),
    ],
    "shared/native/models.py": [
        ('err.errors(include_url=False, include_input=False)', 'err.errors(include_input=False)', _ISSUE_KEYS),
        ('err.errors(include_url=False, include_input=False)', 'err.errors(include_url=False, )', _ISSUE_KEYS),
        ('err.errors(include_url=False, include_input=False)', 'err.errors(include_url=True, include_input=False)', _ISSUE_KEYS),
        ('err.errors(include_url=False, include_input=False)', 'err.errors(include_url=False, include_input=True)', _ISSUE_KEYS),
        ('("function-after", "function-before",', '("XXfunction-afterXX", "function-before",', _FUNCTION_TAG),
        ('("function-after", "function-before",', '("FUNCTION-AFTER", "function-before",', _FUNCTION_TAG),
        ('"function-before", "json-or-python")', '"XXfunction-beforeXX", "json-or-python")', _FUNCTION_TAG),
        ('"function-before", "json-or-python")', '"FUNCTION-BEFORE", "json-or-python")', _FUNCTION_TAG),
    ],
    "shared/openai/batch_outcomes.py": [
        ('door.get("model", "")', 'door.get("model", None)', _DOOR_MODEL),
        ('door.get("model", "")', 'door.get("model", )', _DOOR_MODEL),
        ('door.get("model", "")', 'door.get("model", "XXXX")', _DOOR_MODEL),
        ('request.get("encodingFormat", "float")', 'request.get("encodingFormat", None)', _BASE64_ONLY),
        ('request.get("encodingFormat", "float")', 'request.get("encodingFormat", )', _BASE64_ONLY),
        ('request.get("encodingFormat", "float")', 'request.get("encodingFormat", "XXfloatXX")', _BASE64_ONLY),
        ('request.get("encodingFormat", "float")', 'request.get("encodingFormat", "FLOAT")', _BASE64_ONLY),
        ('int(status.get("code", 2) or 2)', 'int(status.get("code", None) or 2)', "`or 2` makes None 2 again"),
        ('int(status.get("code", 2) or 2)', 'int(status.get("code", ) or 2)', "`or 2` makes None 2 again"),
        ('errors.from_upstream(http, grpc,', 'errors.from_upstream(http, None,',
         "the line carries the error's OpenAI body, which has no gRPC code"),
        ("usage.get(responses, 0)) or 0)", "usage.get(responses, None)) or 0)", "`or 0` makes None 0 again"),
        ("usage.get(responses, 0)) or 0)", "usage.get(responses, )) or 0)", "`or 0` makes None 0 again"),
        ('.get("reasoning_tokens", 0)', '.get("reasoning_tokens", None)', "`or 0` just after makes None 0 again"),
        ('.get("reasoning_tokens", 0)', '.get("reasoning_tokens", )', "`or 0` just after makes None 0 again"),
    ],
    "shared/openai/translate.py": [
        ("results: list[dict[str, Any]] | None = None", 'results: list[dict[str, Any]] | None = ""',
         "`results` is first read by a tool result, and a result before any assistant turn answers no call: it is "
         "refused before the read; every other turn sets it to None"),
    ],
    "shared/openai/chat_response.py": [
        ("ensure_ascii=False", "ensure_ascii=None", "json.dumps only tests ensure_ascii for truth"),
    ],
    "shared/openai/models.py": [
        ('c in "_-")', 'c in "XX_-XX")', _X_IS_ALNUM),
        (".get(name, default) != value", ".get(name, None) != value", _NOT_ALSO_FINE),
        (".get(name, default) != value", ".get(name, ) != value", _NOT_ALSO_FINE),
    ],
    "shared/openai/response_request.py": [
        ("if err.details else", "if (err.details) or True else", _SUB_DETAILS),
        ('{"field": "", "description"', '{"XXfieldXX": "", "description"', _SUB_DETAILS),
        ('{"field": "", "description"', '{"FIELD": "", "description"', _SUB_DETAILS),
        ('{"field": "", "description"', '{"field": "XXXX", "description"', _SUB_DETAILS),
        ('"description": err.message}', '"XXdescriptionXX": err.message}', _SUB_DETAILS),
        ('"description": err.message}', '"DESCRIPTION": err.message}', _SUB_DETAILS),
        ('detail.get("field", "")', 'detail.get("field", None)', _SUB_DETAILS),
        ('detail.get("field", "")', 'detail.get("field", )', _SUB_DETAILS),
        ('detail.get("field", "")', 'detail.get("field", "XXXX")', _SUB_DETAILS),
        ('detail.get("description", err.message)', 'detail.get("description", None)', _SUB_DETAILS),
        ('detail.get("description", err.message)', 'detail.get("description", )', _SUB_DETAILS),
        ('"" if field == "body" else field', '"" if (field == "body") and False else field', _SUB_FIELD),
        ('"" if field == "body" else field', '"XXXX" if field == "body" else field', _SUB_FIELD),
        ('"" if field == "body" else field', '"" if field == "XXbodyXX" else field', _SUB_FIELD),
        ('"" if field == "body" else field', '"" if field == "BODY" else field', _SUB_FIELD),
        ('not field or field.startswith("[")', 'not field and field.startswith("[")', _SUB_FIELD),
        ('field.startswith("[")', 'field.startswith("XX[XX")', _SUB_FIELD),
        ("if joined else rule", "if (joined) or True else rule", _SUB_FIELD),
        ("<= 64 or NAMESPACE_SEPARATOR", "<= 65 or NAMESPACE_SEPARATOR", _NAMESPACE_LENGTH),
        ('c in "_-")', 'c in "XX_-XX")', _X_IS_ALNUM),
    ],
    "shared/openai/embeddings.py": [
        ('.decode("ascii")', '.decode("ASCII")', "codec names are case-insensitive"),
    ],
    "shared/openai/chat.py": [
        ("_text(message.content, where), where, call_id", "_text(message.content, where), None, call_id",
         "translate.native_messages reads a tool turn's call_id_where, never its where"),
        ("_text(message.content, where), where, call_id", "_text(message.content, where), call_id",
         "translate.native_messages reads a tool turn's call_id_where, never its where"),
        ('if message.role == "assistant" else []', 'if (message.role == "assistant") or True else []',
         "ChatMessage's validator refuses tool_calls on every other role, so their list is [] either way"),
        ('in ("system", "developer")', 'in ("XXsystemXX", "developer")', "a system message keeps its own role either way"),
        ('in ("system", "developer")', 'in ("SYSTEM", "developer")', "a system message keeps its own role either way"),
        ('if d.get("field") == "modelUri" else d', 'if (d.get("field") == "modelUri") or True else d',
         "every error services.resolve_model raises has one detail, and its field is modelUri"),
        ('"required": ["role"]', '"XXrequiredXX": ["role"]', _ROLE_REQUIRED),
        ('"required": ["role"]', '"REQUIRED": ["role"]', _ROLE_REQUIRED),
    ],
    "shared/openai/response_object.py": [
        ("ensure_ascii=False", "ensure_ascii=None", "json.dumps only tests ensure_ascii for truth"),
        ('message_item(text_id, "")', "message_item(text_id, None)", _OPENED),
        ('message_item(text_id, "")', 'message_item(text_id, "XXXX")', _OPENED),
    ],
    "shared/jobs/submit.py": [
        ("json.dumps(payload, ensure_ascii=False)", "json.dumps(payload, ensure_ascii=None)", _PAYLOAD_JSON),
        ("json.dumps(payload, ensure_ascii=False)", "json.dumps(payload, )", _PAYLOAD_JSON),
        ("json.dumps(payload, ensure_ascii=False)", "json.dumps(payload, ensure_ascii=True)", _PAYLOAD_JSON),
        ("store.finish(op_id, None, 0,", "store.finish(op_id, None, None,", _FAILED_SIZE),
        ("store.finish(op_id, None, 0,", "store.finish(op_id, None, 1,", _FAILED_SIZE),
    ],
    "shared/jobs/usage.py": [
        ('str(record.get("day", ""))', 'str(record.get("day", None))', _LEDGER_ITEM, "callers"),
        ('str(record.get("day", ""))', 'str(record.get("day", ))', _LEDGER_ITEM, "callers"),
        ('str(record.get("day", ""))', 'str(record.get("day", "XXXX"))', _LEDGER_ITEM, "callers"),
        ('record.get("callers", [])', 'record.get("callers", None)', _LEDGER_ITEM, "callers"),
        ('record.get("callers", [])', 'record.get("callers", )', _LEDGER_ITEM, "callers"),
        ('str(record.get("caller", ""))', 'str(record.get("caller", None))', _LEDGER_ITEM, "pair_totals"),
        ('str(record.get("caller", ""))', 'str(record.get("caller", ))', _LEDGER_ITEM, "pair_totals"),
        ('str(record.get("caller", ""))', 'str(record.get("caller", "XXXX"))', _LEDGER_ITEM, "pair_totals"),
        ('str(record.get("day", ""))', 'str(record.get("day", None))', _LEDGER_ITEM, "pair_totals"),
        ('str(record.get("day", ""))', 'str(record.get("day", ))', _LEDGER_ITEM, "pair_totals"),
        ('str(record.get("day", ""))', 'str(record.get("day", "XXXX"))', _LEDGER_ITEM, "pair_totals"),
        ('record.get("models", [])', 'record.get("models", None)', _LEDGER_ITEM, "pair_totals"),
        ('record.get("models", [])', 'record.get("models", )', _LEDGER_ITEM, "pair_totals"),
        ('record.get("models", [])', 'record.get("models", None)', _LEDGER_ITEM, "days"),
        ('record.get("models", [])', 'record.get("models", )', _LEDGER_ITEM, "days"),
        ('str(record.get("day", ""))', 'str(record.get("day", None))', _LEDGER_ITEM, "days"),
        ('str(record.get("day", ""))', 'str(record.get("day", ))', _LEDGER_ITEM, "days"),
        ('str(record.get("day", ""))', 'str(record.get("day", "XXXX"))', _LEDGER_ITEM, "days"),
        *(('_SHORT[counter]}", 0))', f'_SHORT[counter]}}", {other}))', _ALL_COUNTERS, function)
          for other in ("None", "", "1") for function in ("days", "pair_totals")),
        ('str(operation.get("kind", ""))', 'str(operation.get("kind", None))', _NO_KIND_NAMED),
        ('str(operation.get("kind", ""))', 'str(operation.get("kind", ))', _NO_KIND_NAMED),
        ('str(operation.get("kind", ""))', 'str(operation.get("kind", "XXXX"))', _NO_KIND_NAMED),
    ],
    "shared/openai/usage_api.py": [
        ('if query.kind is COSTS else {}', 'if (query.kind is COSTS) or True else {}',
         "the amounts are read by _cost_result only: the usage reports would compute them and never read them"),
        ('_filter(query, "models") if "models" in kind.filters else None',
         '_filter(query, "models") if ("models" in kind.filters) or True else None',
         "a report without that filter refused the parameter above whenever it has any value, '' included, so "
         "_filter finds nothing and gives None as well"),
        ('_filter(query, "line_items") if "line_items" in kind.filters else None',
         '_filter(query, "line_items") if ("line_items" in kind.filters) or True else None',
         "the same: a report without line_items refused any value of it above"),
        ('_seconds(query, "end_time", required=False)', '_seconds(query, "end_time", required=None)',
         "only `if required` reads it, and None is as falsy as False"),
        ("today = int(now // DAY)", "today = int(now / DAY)",
         "now is a positive clock reading; the quotient's float never reaches the next whole day before now does "
         "(checked for the last float before every midnight of a year from 2026-12-01)"),
        ('.replace(tzinfo=UTC).timestamp() // DAY)', '.replace(tzinfo=UTC).timestamp() / DAY)',
         "a UTC midnight's timestamp is a whole multiple of DAY, so / and // give the same whole number"),
        ("key=lambda k: tuple(str(part) for part in k))", "key=None)", _SAME_ORDER),
        ("sorted(groups, key=lambda k: tuple(str(part) for part in k))", "sorted(groups, )", _SAME_ORDER),
        ("zip(query.group_by, key, strict=True)", "zip(query.group_by, key, strict=None)", _SAME_GROUP_LENGTH),
        ("zip(query.group_by, key, strict=True)", "zip(query.group_by, key, strict=False)", _SAME_GROUP_LENGTH),
        ("zip(query.group_by, key, strict=True)", "zip(query.group_by, key, )", _SAME_GROUP_LENGTH),
        ("report(query, callers, totals,", "report(query, None, totals,",
         "totals hold the pairs of `callers` only (they are what was read, or nothing when callers is empty): "
         "filtering them by callers again changes nothing"),
        ("totals = usage.pair_totals(store, pairs) if pairs else {}",
         "totals = usage.pair_totals(store, pairs) if (pairs) or True else {}",
         "pair_totals of no pairs asks for no keys (JobStore.records of [] sends nothing) and gives {}"),
        ("inv.request.query_lists if inv.request is not None else {}",
         "inv.request.query_lists if (inv.request is not None) or True else {}",
         "the usage routes are HTTP routes: the runtime always hands them the request"),
    ],
    "shared/jobs/keys.py": [
        ("for _attempt in (1, 2)", "for _attempt in (2, 2)", _TWO_ROUNDS),
        ("for _attempt in (1, 2)", "for _attempt in (1, 3)", _TWO_ROUNDS),
        ('{**record, "digest": digest', '{**record, "XXdigestXX": digest', _ROTATED_DIGEST, "rotate"),
        ('{**record, "digest": digest', '{**record, "DIGEST": digest', _ROTATED_DIGEST, "rotate"),
        ('if name != "name"]', 'if name != "XXnameXX"]', _NO_NAME_GIVEN, "_stored_names"),
        ('if name != "name"]', 'if name != "NAME"]', _NO_NAME_GIVEN, "_stored_names"),
        ("return Reply(_view(record, clock.now()))", "return Reply(_view(record, None))", _REVOKED_VIEW, "revoke"),
        ('_view({**record, "revoked_at": now}, now)', '_view({**record, "revoked_at": now}, None)', _REVOKED_VIEW,
         "revoke"),
        ("keep_name=False)", "keep_name=None)", _NAME_NOT_IN_SETS, "update"),
        ("keep_name=False)", "keep_name=True)", _NAME_NOT_IN_SETS, "update"),
        ("_lookup_fields(sets, keep_name=False)", "_lookup_fields(sets, )", _NAME_NOT_IN_SETS, "update"),
        ('AssertionError("unreachable")', "AssertionError(None)", _UNREACHABLE, "update"),
        ('AssertionError("unreachable")', 'AssertionError("XXunreachableXX")', _UNREACHABLE, "update"),
        ('AssertionError("unreachable")', 'AssertionError("UNREACHABLE")', _UNREACHABLE, "update"),
        ('get("name", "")', 'get("name", None)', _NAME_PARAM, "_existing"),
        ('get("name", "")', 'get("name", )', _NAME_PARAM, "_existing"),
        ('get("name", "")', 'get("name", "XXXX")', _NAME_PARAM, "_existing"),
        ("secrets.token_urlsafe(32)", "secrets.token_urlsafe(None)", _DEFAULT_ENTROPY, "new_secret"),
        ('if name == "name":', 'if name == "XXnameXX":', _NAME_FROM_REQUEST, "_policy_fields"),
        ('if name == "name":', 'if name == "NAME":', _NAME_FROM_REQUEST, "_policy_fields"),
        ("if keep_name else ()", "if (keep_name) or True else ()", _NAME_NOT_IN_SETS, "_lookup_fields"),
        ('{"BOOL": value}', '{"XXBOOLXX": value}', _NO_BOOL, "_typed"), ('{"BOOL": value}', '{"bool": value}', _NO_BOOL, "_typed"),
        ('.rstrip("0").rstrip(".")', '.rstrip("0").rstrip(None)', _SAME_NUMBER, "_typed"),
        ('.rstrip("0").rstrip(".")', '.rstrip("0").lstrip(".")', _SAME_NUMBER, "_typed"),
        ('.rstrip("0").rstrip(".")', '.rstrip(None).rstrip(".")', _SAME_NUMBER, "_typed"),
        ('.rstrip("0").rstrip(".")', '.lstrip("0").rstrip(".")', _SAME_NUMBER, "_typed"),
        ('.rstrip("0").rstrip(".")', '.rstrip("XX0XX").rstrip(".")', _SAME_NUMBER, "_typed"),
        ('.rstrip("0").rstrip(".")', '.rstrip("0").rstrip("XX.XX")', _SAME_NUMBER, "_typed"),
        ('record.get("created_at", 0)', 'record.get("created_at", None)', _KEY_CREATED, "_view"),
        ('record.get("created_at", 0)', 'record.get("created_at", )', _KEY_CREATED, "_view"),
        ('record.get("created_at", 0)', 'record.get("created_at", 1)', _KEY_CREATED, "_view"),
        ('"SET "', '"set "', _KEYWORD_CASE, "_change"), ('"REMOVE "', '"remove "', _KEYWORD_CASE, "_change"),
        ('" AND #d = :d AND "', '" and #d = :d and "', _KEYWORD_CASE, "_change"),
        ('"ADD #r :one"', '"add #r :one"', _KEYWORD_CASE, "_change"),
        ('"ADD #n :n"', '"add #n :n"', _KEYWORD_CASE, "create"),
    ],
    "shared/jobs/limits.py": [
        *[(f'"{n}": _num(item, "{n}")', f'{key}: _num(item, "{n}")', _CLAIM_DECIDES)
          for n in ("a80", "a100") for key in (f'"XX{n}XX"', f'"{n.upper()}"')],
        *[(f'"{n}": _num(item, "{n}")', f'"{n}": _num(item, {arg})', _CLAIM_DECIDES)
          for n in ("a80", "a100") for arg in ("None", f'"XX{n}XX"', f'"{n.upper()}"')],
        ("Settle(res, part, settings).finish(store)", "Settle(res, part, None).finish(store)", _FINISH_SETTINGS,
         "release_job"),
        ('separators=(",", ":"))', "separators=None)", _RECORD_JSON, "to_record"),
        (', separators=(",", ":"))', ", )", _RECORD_JSON, "to_record"),
        ('int(data["minute"]), 0.0,', 'int(data["minute"]), None,', _JOB_EXPIRY, "from_record"),
        ('int(data["minute"]), 0.0,', 'int(data["minute"]), 1.0,', _JOB_EXPIRY, "from_record"),
        ('model = ""', "model = None", _JOB_MODEL, "admit_job"),
        ('":zero": _n(0)', '":zero": _n(1)', _CLAIMED_AT, "claim_alert"),
        *[(f'seen.get("{n}", 0)', f'seen.get("{n}", {d})', _SEEN_HAS, "send_alert")
          for n in ("set_t", "set_m") for d in ("None", "", "1")],
        ('job_kind = "completion" if kind == "completion" else kind',
         'job_kind = "completion" if (kind == "completion") and False else kind', _SAME_KIND, "admit_job"),
        ('if kind == "completion" else kind', 'if kind == "XXcompletionXX" else kind', _SAME_KIND, "admit_job"),
        ('if kind == "completion" else kind', 'if kind == "COMPLETION" else kind', _SAME_KIND, "admit_job"),
        ('"batch" if kind == "batch" else kind', '"batch" if (kind == "batch") and False else kind', _SAME_KIND,
         "admit_job"),
        ('"batch" if kind == "batch" else kind', '"batch" if kind == "XXbatchXX" else kind', _SAME_KIND, "admit_job"),
        ('"batch" if kind == "batch" else kind', '"batch" if kind == "BATCH" else kind', _SAME_KIND, "admit_job"),
        *[('t, m = worst_case("completion",', f"t, m = worst_case({k},", _COMPLETION_PATH, "admit_job")
          for k in ("None", '"XXcompletionXX"', '"COMPLETION"')],
        ("if real != (0, 0):", "if real != (1, 0):", _ADDS_ZERO, "finish"),
        ("if real != (0, 0):", "if real != (0, 1):", _ADDS_ZERO, "finish"),
        ("self._update(real, False)", "self._update(real, None)", _HELD_FALSY, "finish"),
        *[(a_, b_, _NO_CODE_SAME, "finish") for a_, b_ in (
            ('.get("Code", "")', '.get("Code", None)'), ('.get("Code", "")', '.get("Code", )'),
            ('.get("Code", "")', '.get("Code", "XXXX")'), ('.get("Error", {})', '.get("Error", None)'),
            ('.get("Error", {})', '.get("Error", )'), ('getattr(err, "response", {})', 'getattr(err, "response", None)'),
            ('getattr(err, "response", {})', 'getattr(err, "response", )'))],
        ('method="POST",', "method=None,", _POST_DEFAULT, "_post"),
        ('method="POST", headers={"Content-Type": "application/json"})', 'headers={"Content-Type": "application/json"})',
         _POST_DEFAULT, "_post"),
        ('"Content-Type"', '"content-type"', _HEADER_CASE, "_post"), ('"Content-Type"', '"CONTENT-TYPE"', _HEADER_CASE, "_post"),
        ('f"{type(err).__name__}"[:100]', 'f"{type(err).__name__}"[:101]', _TYPE_NAME, "_post"),
        ("// 60", "/ 60", _FLOOR_MINUTE),
        ('.rstrip("0")', '.rstrip("XX0XX")', _NUMBER_STRIP, "_headers"),
        ('.rstrip(".")', '.rstrip("XX.XX")', _NUMBER_STRIP, "_headers"),
        ("budget is None) or not seen", "budget is None) and not seen", _ALWAYS_SOME, "_alert_from"),
        ("policy is None or (", "policy is None and (", _ALWAYS_SOME, "_alert_from"),
        *[("default=Decimal(0))", f"{d})", _BUDGET_FRACTION, "_alert_from")
          for d in ("default=None", "", "default=Decimal(1)")],
        *[(f'seen.get("{n}", 0)', f'seen.get("{n}", {d})', _SEEN_HAS, "_alert_from")
          for n in ("set_t", "set_m") for d in ("None", "", "1")],
        *[('seen.get(f"a{threshold}", 0)', f'seen.get(f"a{{threshold}}", {d})', _SEEN_HAS, "_alert_from")
          for d in ("None", "", "1")],
        ('seen[f"a{threshold}"] = 1', 'seen[f"a{threshold}"] = 2', _MARK_TRUTH, "_alert_from"),
        ("if value is not None else 0", "if (value is not None) or True else 0", _DECIMAL_NONE, "_num"),
        ("return 0", "return 1", _NUM_WRITTEN, "_num"),
        ('in "rk"', 'in "XXrkXX"', _ITEM_NAMES, "_stale_minutes"),
        ("name[1:].isdigit()", "name[2:].isdigit()", _ITEM_NAMES, "_stale_minutes"),
        *((text, text.lower(), _KEYWORD_CASE) for text in (
            '"REMOVE "', '" REMOVE #or, #ok"', '" AND "', '"ADD #ut :dt, #um :dm, #st :rt, #sm :rm"', '" REMOVE #v"',
            '"(attribute_not_exists(#ut) OR #ut <= :roomt)"', '"(attribute_not_exists(#um) OR #um <= :roomm)"',
            '"(attribute_not_exists(#r) OR #r < :rpm)"', '"(attribute_not_exists(#k) OR #k <= :roomk)"')),
        ("range(1, CONFLICT_ROUNDS + 1)", "range(1, CONFLICT_ROUNDS + 2)", _LAST_ROUND, "_try_reserve"),
        ('answer.get("Attributes", {})', 'answer.get("Attributes", None)', _ALL_NEW, "_try_reserve"),
        ('answer.get("Attributes", {})', 'answer.get("Attributes", )', _ALL_NEW, "_try_reserve"),
        *[(f'"{n}": _num(attributes, "{n}")', f'{key}: _num(attributes, "{n}")', _USED_UNREAD)
          for n in ("used_t", "used_m") for key in (f'"XX{n}XX"', f'"{n.upper()}"')],
        *[(f'"{n}": _num(attributes, "{n}")', f'"{n}": _num(attributes, {arg})', _USED_UNREAD)
          for n in ("used_t", "used_m") for arg in ("None", f'"XX{n}XX"', f'"{n.upper()}"')],
        *[('body.get("modelUri", "")', f'body.get("modelUri", {d})', _PAYLOAD_MODEL, "admit_job")
          for d in ("None", "", '"XXXX"')],
        ("job_store(inv.settings)", "job_store(None)", _STORE_CACHED, "finish_request"),
        ("Settle(res, part, inv.settings).finish(store)", "Settle(res, part, None).finish(store)", _FINISH_SETTINGS,
         "finish_request"),
        *[(a_, b_, _FINISH_GUARD, "finish_request") for a_, b_ in (
            ('log.warning("budget reservation not settled", extra', "log.warning(None, extra"),
            ('extra={"error": f"{type(err).__name__}: {err}"[:300]})', "extra=None)"),
            ('log.warning("budget reservation not settled", extra', "log.warning(extra"),
            ('"budget reservation not settled", extra={"error": f"{type(err).__name__}: {err}"[:300]})',
             '"budget reservation not settled", )'),
            ('"budget reservation not settled"', '"XXbudget reservation not settledXX"'),
            ('"budget reservation not settled"', '"BUDGET RESERVATION NOT SETTLED"'),
            ('{"error":', '{"XXerrorXX":'), ('{"error":', '{"ERROR":'), ("type(err)", "type(None)"),
            ("[:300]", "[:301]"))],
        *[('getattr(inv, "reservation", None)', 'getattr(inv, "reservation", )', _INV_RESERVATION, f)
          for f in ("finish_request", "for_request")],
        ("safe=''", "safe='XXXX'", _X_SAFE, "item_key"),
        ("output_bound(body, default)[1]", "output_bound(body, None)[1]", _FLAG_ONLY, "with_max_tokens"),
        *[("money(model, mode, kind, tokens, 0, prices)", f"money(model, mode, {k}, tokens, {u}, prices)", _TOKEN_MONEY,
           "worst_case") for k, u in (("None", "0"), ("kind", "None"), ("kind", "1"))],
        ("money(model, mode, kind, tokens, units, prices)", "money(model, None, kind, tokens, units, prices)",
         _CLASSIFIER_MONEY, "worst_case"),
        ("money(model, mode, kind, tokens, units, prices)", "money(model, mode, kind, None, units, prices)",
         _CLASSIFIER_MONEY, "worst_case"),
        ("self.done = False", "self.done = None", _DONE_TRUTH, "__init__"),
        ('self.real: tuple[int, int] | None = None', 'self.real: tuple[int, int] | None = ""', _REAL_EMPTY, "__init__"),
        ('"TableName": ""', '"TableName": "XXXX"', _TABLE_SET, "_update"),
        ("real_usage(entry, self.res.kind, self.settings)", "real_usage(entry, None, self.settings)", _KIND_BY_MODEL,
         "commit"),
        ("held = False", "held = None", _HELD_FALSY, "commit"),
        ("mark, patient)", "mark, None)", _PATIENT_TRUTH, "commit"),
        *[('"a100": _num(attributes, "a100")', f'{key}: _num(attributes, "a100")', _A100_AT_ADMISSION)
          for key in ('"XXa100XX"', '"A100"')],
        *[('"a100": _num(attributes, "a100")', f'"a100": _num(attributes, {arg})', _A100_AT_ADMISSION)
          for arg in ("None", '"XXa100XX"', '"A100"')],
    ],
    "shared/jobs/store.py": [
        ("int(120 / poll_s)", "int(121 / poll_s)", _FORTY_POLLS, "create_jobs_table"),
        *[(f'{n}="when_required"', f'{n}="WHEN_REQUIRED"', _CHECKSUM_CASE, "s3_config")
          for n in ("request_checksum_calculation", "response_checksum_validation")],
        ('signature_version="s3v4"', "signature_version=None", _S3V4_DEFAULT, "s3_config"),
        ('"path"}, signature_version="s3v4", request_', '"path"}, request_', _S3V4_DEFAULT, "s3_config"),
        *[(a_, b_, _BATCH_RESPONSES, "_batch_get") for a_, b_ in (
            (".get(self.table, [])", ".get(self.table, None)"), (".get(self.table, [])", ".get(self.table, )"),
            ('answer.get("Responses", {})', 'answer.get("Responses", None)'),
            ('answer.get("Responses", {})', 'answer.get("Responses", )'))],
        *((text, text.lower(), _KEYWORD_CASE) for text in _STORE_EXPRESSIONS),
        ("range(1, CONFLICT_ATTEMPTS + 1)", "range(1, CONFLICT_ATTEMPTS + 2)",
         "the loop raises at attempt == CONFLICT_ATTEMPTS, so it never reaches one more", "add_usage"),
        ('getattr(err, "response", {})', 'getattr(err, "response", None)',
         "err is a botocore ClientError, which always has .response", "add_usage"),
        ('getattr(err, "response", {})', 'getattr(err, "response", )',
         "err is a botocore ClientError, which always has .response", "add_usage"),
        ('.get("Code", "")', '.get("Code", None)', _NO_CODE, "_code"),
        ('.get("Code", "")', '.get("Code", )', _NO_CODE, "_code"),
        ('.get("Code", "")', '.get("Code", "XXXX")', _NO_CODE, "_code"),
        ('getattr(err, "response", {})', 'getattr(err, "response", None)', _CLIENT_ERROR, "is_write_conflict"),
        ('getattr(err, "response", {})', 'getattr(err, "response", )', _CLIENT_ERROR, "is_write_conflict"),
        ("if float(value).is_integer() else", "if (float(value).is_integer()) and False else",
         "a whole number written as 7.0 is the number 7 to the Document API (numbers are values, not text) and to "
         "Python when read back", "_n"),
        ('settings.results_bucket or ""', 'settings.results_bucket or "XXXX"',
         "require_store() refuses settings without a bucket first, so the default is never read"),
        ('(condition or "")', '(condition or "XXXX")',
         "the text is only searched for :placeholders and #names, and XXXX holds none", "_update"),
        ('int(task.get("attempts", 1))', 'int(task.get("attempts", None))',
         "a claim that won has just ADDed attempts, so the default is never read", "claim"),
        ('int(task.get("attempts", 1))', 'int(task.get("attempts", ))',
         "a claim that won has just ADDed attempts, so the default is never read", "claim"),
        ('int(task.get("attempts", 1))', 'int(task.get("attempts", 2))',
         "a claim that won has just ADDed attempts, so the default is never read", "claim"),
        ('int(task.get("attempts", 0)))', 'int(task.get("attempts", 1)))',
         "a claim loses only to a task record some claim made (an absent task is always won), which has attempts",
         "claim"),
        ("ensure_ascii=False", "ensure_ascii=None", "json.dumps only tests ensure_ascii for truth"),
        (':zero": _n(0)', ':zero": _n(1)', "a lease that ran out at 1 s past the epoch is as over as one at 0"),
        ('key.rsplit("#i", 1)[1]', 'key.rsplit("#i", )[1]', _ONE_CLAUSE),
        ('key.rsplit("#i", 1)[1]', 'key.split("#i", 1)[1]', _ONE_CLAUSE),
        ('key.rsplit("#i", 1)[1]', 'key.rsplit("#i", 2)[1]', _ONE_CLAUSE),
        ('if error is not None else None)', 'if (error is not None) or True else None)',
         "_update sends only the names its expressions use, so an unused #error is dropped", "finish"),
        ('!= DONE or not task.get("result_key")', '!= DONE and not task.get("result_key")',
         "a task gets its result_key in the same write that makes it done (complete), so the two never differ"),
        ("condition = None", 'condition = ""', "_update tests the condition for truth only", "put_record"),
        ('raise StoreError(f"job store: {type(err).__name__}") from None', "raise StoreError(None) from None",
         "_write turns every BotoCoreError into a StoreError, so this except is never reached", "delete_record"),
        ('raise StoreError(f"job store: {type(err).__name__}") from None',
         'raise StoreError(f"job store: {type(None).__name__}") from None',
         "_write turns every BotoCoreError into a StoreError, so this except is never reached", "delete_record"),
        ('task.get("attempts", 0)', 'task.get("attempts", None)', _NEVER_ABSENT),
        ('task.get("attempts", 0)', 'task.get("attempts", )', _NEVER_ABSENT),
        ('task.get("deferrals", 0)', 'task.get("deferrals", None)', _NEVER_ABSENT),
        ('task.get("deferrals", 0)', 'task.get("deferrals", )', _NEVER_ABSENT),
        ('task.get("lease_until", 0) or 0)', 'task.get("lease_until", None) or 0)', _NEVER_ABSENT),
        ('task.get("lease_until", 0) or 0)', 'task.get("lease_until", ) or 0)', _NEVER_ABSENT),
        ('task.get("lease_until", 0) or 0)', 'task.get("lease_until", 1) or 0)', _NEVER_ABSENT),
        ('task.get("lease_until", 0) or 0)', 'task.get("lease_until", 0) or 1)', _NEVER_ABSENT),
    ],
    "shared/jobs/queue.py": [
        ('tag.rsplit("}", 1)[-1]', 'tag.rsplit("}", )[-1]', _CLARK),
        ('tag.rsplit("}", 1)[-1]', 'tag.split("}", 1)[-1]', _CLARK),
        ('tag.rsplit("}", 1)[-1]', 'tag.rsplit("}", 2)[-1]', _CLARK),
        ('method="POST"', 'method="post"', "botocore upper-cases the method it signs, and the request goes out "
                                           "through session.post whatever the AWSRequest says"),
    ],
    # the native services: a pacer's name only tells its quota from the others (classification, operation-get,
    # async-start); every embedding call goes through embed_one, the only place that names the embedding quota
    # -- shared/jobs/operations.py (h-batches) --
    "shared/jobs/operations.py": [
        *(("store.finish(op_id, None, 0, cancelled,", f"store.finish(op_id, None, {size}, cancelled,",
           "a cancel finishes the operation with an error, and JobStore.finish writes a result size only with a "
           "result: the size handed with an error is never written or read", "cancel") for size in ("None", "1")),
        ('inv.path_params.get("operationId", "")', 'inv.path_params.get("operationId", "XXXX")',
         "a missing operationId is refused as a bad one either way: neither '' nor 'XXXX' (upper case) matches "
         "OPERATION_ID, and the refusal does not name the value", "_operation_id"),
        ("limits.release_job(item, inv.settings)", "limits.release_job(item, None)",
         "release_job reads the settings only to find the instance's store, which cancel has just used to read and "
         "finish the operation (job_store returns that one whatever it is given), and Settle.finish never reads them",
         "cancel"),
    ],
    # -- shared/jobs/batches.py (h-batches) --
    "shared/jobs/batches.py": [
        *((text, mutated, "a native batch's body is request.upstream(), which leaves out None fields, and exactly one "
           "of sourceDatasetId and requests is set: the body has no requests key to pop, whatever the key popped",
           "_submit_native") for text, mutated in (('body.pop("requests", None)', 'body.pop(None, None)'),
                                                   ('body.pop("requests", None)', 'body.pop("XXrequestsXX", None)'),
                                                   ('body.pop("requests", None)', 'body.pop("REQUESTS", None)'))),
        *((f'metadata.get("{name}", 0) or 0', f'metadata.get("{name}", {other}) or 0',
           "a missing count is None or 0 before `or 0`, which makes either 0", "_submit_native")
          for name in ("completedBatches", "totalBatches") for other in ("None", "")),
        ("store = job_store(inv.settings)", "store = job_store(None)",
         "worker.process, the only caller, has just called job_store(inv.settings), so the instance's store exists "
         "and is returned whatever the argument", "start_chunk"),
        *(('services.pacer("async-start",', f"services.pacer({name},",
           "the name only keys the instance's table of pacers, and no other quota's pacer has any of these names: "
           "the starts get a pacer of their own at the same rate either way", "start_chunk")
          for name in ("None", '"XXasync-startXX"', '"ASYNC-START"')),
        ('turns["taken"] + 1', 'turns["taken"] - 1',
         "counting the turns down instead of up: -n % START_CHECK_EVERY == 0 exactly when n % START_CHECK_EVERY == 0 "
         "(Python's % takes the divisor's sign), so the same turns look at the operation", "start_chunk"),
    ],
    "shared/native/services.py": [
        ('pacer("embedding",', "pacer(None,", "the embedding quota is named only here; any other name that no other "
                                              "quota uses is the same one pacer", "embed_one"),
        ('pacer("embedding",', 'pacer("XXembeddingXX",', "the same: a name no other quota uses", "embed_one"),
        ('pacer("embedding",', 'pacer("EMBEDDING",', "the same: a name no other quota uses", "embed_one"),
        ("tuned=False)", "tuned=None)", "only `if tuned` reads it, and None is as falsy as False"),
        ('int(result.get("numTokens", 0) or 0)', 'int(result.get("numTokens", None) or 0)', "`or 0` makes None 0 again"),
        ('int(result.get("numTokens", 0) or 0)', 'int(result.get("numTokens", ) or 0)', "`or 0` makes None 0 again"),
        ('UpstreamError("cancelled after another item failed")', "UpstreamError(None)",
         "an item refused after the failure ends a future fan_out never reads: the error it raises was chosen "
         "before `stop` was set"),
        ('UpstreamError("cancelled after another item failed")', 'UpstreamError("XXcancelled after another item failedXX")',
         "the same: that error is never raised to the caller"),
        ('UpstreamError("cancelled after another item failed")', 'UpstreamError("CANCELLED AFTER ANOTHER ITEM FAILED")',
         "the same: that error is never raised to the caller"),
    ],
    # the pass-through to upstream's Responses API
    "shared/openai/responses_upstream.py": [
        ('model_uri.split("://", 1)[1]', 'model_uri.split("://", )[1]', _NAME_SEGMENT),
        ('model_uri.split("://", 1)[1]', 'model_uri.split("://", 2)[1]', _NAME_SEGMENT),
        ('getattr(tool, "type", None)', 'getattr(tool, "type", )',
         "every tool the request model admits has a type (function, namespace or a hosted kind): the default is "
         "never read"),
        ('mode="json")', "mode=None)", "the request was parsed from JSON, so it holds only JSON values, which python mode dumps as json mode does"), ('mode="json")', ")", "the request was parsed from JSON, so it holds only JSON values, which python mode dumps as json mode does"),
        ('mode="json")', 'mode="XXjsonXX")', "the request was parsed from JSON, so it holds only JSON values, which python mode dumps as json mode does"), ('mode="json")', 'mode="JSON")', "the request was parsed from JSON, so it holds only JSON values, which python mode dumps as json mode does"),
        ('responses("POST",', 'responses("post",',
         "requests upper-cases the method it sends, and the client counts only GET and DELETE as idempotent"),
        ("bool(request.background), folder)", "bool(None), folder)",
         "in the stream branch: responses_api.create refuses background with stream before it calls create, so "
         "request.background is falsy there", "create"),
        ("if isinstance(text, str) else text", "if (isinstance(text, str)) or True else text",
         "the client hands a stream's events as the text of each data line (client.sse_data: a list of str)"),
        ('(f"?{query}" if query else "")', '(f"?{query}" if (query) or True else "")',
         "requests drops a '?' with nothing after it when it prepares the URL: the same request goes out"),
    ],
    # -- shared/openai/response_store.py (h-responses) --
    "shared/openai/response_store.py": [
        ('found.get("expires_at", 0) or 0', 'found.get("expires_at", None) or 0', _EXPIRES),
        ('found.get("expires_at", 0) or 0', 'found.get("expires_at", ) or 0', _EXPIRES),
        ('found.get("expires_at", 0) or 0', 'found.get("expires_at", 1) or 0', _EXPIRES),
        ('found.get("expires_at", 0) or 0', 'found.get("expires_at", 0) or 1', _EXPIRES),
        ('found.get("object_key") or object_key(found["id"])', 'found.get("object_key") and object_key(found["id"])',
         _KEYED),
        ('found.get("object_key")', 'found.get(None)', _KEYED),
        ('found.get("object_key")', 'found.get("XXobject_keyXX")', _KEYED),
        ('found.get("object_key")', 'found.get("OBJECT_KEY")', _KEYED),
        ('object_key(found["id"]))', 'object_key(None))', _KEYED),
        ('object_key(found["id"]))', 'object_key(found["XXidXX"]))', _KEYED),
        ('object_key(found["id"]))', 'object_key(found["ID"]))', _KEYED),
        ("ensure_ascii=False, separators", "ensure_ascii=None, separators", _DOCUMENT_JSON),
        ("ensure_ascii=False, separators", "ensure_ascii=True, separators", _DOCUMENT_JSON),
        ("ensure_ascii=False, separators", "separators", _DOCUMENT_JSON),
        ('separators=(",", ":"))', "separators=None)", _DOCUMENT_JSON),
        ('ensure_ascii=False, separators=(",", ":"))', "ensure_ascii=False, )", _DOCUMENT_JSON),
        ('c in "_-"', 'c in "XX_-XX"', _X_IS_ALNUM),
    ],
    # -- shared/openai/responses_api.py (h-responses) --
    "shared/openai/responses_api.py": [
        ("return operation(body, inv)", "return operation(None, inv)",
         "the forwarded routes (retrieve, delete, cancel, input_items) take no request body: body is always None",
         "_forwarded"),
        ("run.__doc__ = operation.__doc__", "run.__doc__ = None",
         "nothing reads a route's docstring at run time (the spec's summaries are the Route entries in shared/routes.py)",
         "_forwarded"),
        ("store.finish(op_id, None, 0,", "store.finish(op_id, None, None,", _FAILED_SIZE, "_cancel_job"),
        ("store.finish(op_id, None, 0,", "store.finish(op_id, None, 1,", _FAILED_SIZE, "_cancel_job"),
        ('missing.code = "previous_response_not_found"', 'missing.code = "PREVIOUS_RESPONSE_NOT_FOUND"',
         "an error's code reaches a caller only through to_openai_body (every /v1 route) or a batch's problem list, "
         "and both lower-case it", "_chain"),
        ("limits.release_job(job, settings())", "limits.release_job(job, None)",
         "the route built the instance's store from its settings before (_current), so job_store hands that store "
         "back whatever it is given; and a release (Settle.finish with no usage) reads no setting", "_cancel_job"),
        ("document = settle(store, found, document, inv)", "document = settle(store, found, document, None)",
         "settle reads no field of its invocation"),
        ('if found.get("job") else None', 'if (found.get("job")) or True else None', _PENDING_JOB, "settle"),
        ('found.get("job") or "")', 'found.get("job") or "XXXX")', _PENDING_JOB, "settle"),
        ('"status": "in_progress",', '"status": "XXin_progressXX",', _OVERRIDDEN, "skeleton"),
        ('"status": "in_progress",', '"status": "IN_PROGRESS",', _OVERRIDDEN, "skeleton"),
        ("inv.log_fields.update(operation_id=op_id, background=True)", "inv.log_fields.update(background=True)",
         "submit_tasks, handed op_id, has put the same operation_id in the log fields already", "_background"),
        ('inv.path_params.get("response_id", "")', 'inv.path_params.get("response_id", None)', _ROUTE_PARAM, "_current"),
        ('inv.path_params.get("response_id", "")', 'inv.path_params.get("response_id", )', _ROUTE_PARAM, "_current"),
        ('inv.path_params.get("response_id", "")', 'inv.path_params.get("response_id", "XXXX")', _ROUTE_PARAM, "_current"),
        ('failed(response, "", "", state="cancelled")', 'failed(response, None, "", state="cancelled")', _CANCELLED),
        ('failed(response, "", "", state="cancelled")', 'failed(response, "", None, state="cancelled")', _CANCELLED),
        ('failed(response, "", "", state="cancelled")', 'failed(response, "XXXX", "", state="cancelled")', _CANCELLED),
        ('failed(response, "", "", state="cancelled")', 'failed(response, "", "XXXX", state="cancelled")', _CANCELLED),
        *[('in ("system", "developer")', f'in ({r}, "developer")', _SYSTEM_SAME, "_turns")
          for r in ('"XXsystemXX"', '"SYSTEM"')],
        ('translate.Turn("assistant", "", where, calls=[call])', 'translate.Turn("assistant", "", None, calls=[call])',
         _CALL_TURN_WHERE, "_turns"),
        ('translate.Turn("assistant", "", where, calls=[call])', 'translate.Turn("assistant", "", calls=[call])',
         _CALL_TURN_WHERE, "_turns"),
        ('translate.Turn("tool", text, f"{where}.output", call_id', 'translate.Turn("tool", text, None, call_id',
         _TOOL_TURN_WHERE, "_turns"),
        ('translate.Turn("tool", text, f"{where}.output", call_id', 'translate.Turn("tool", text, call_id',
         _TOOL_TURN_WHERE, "_turns"),
        ("output if isinstance(output, str) else", "output if (isinstance(output, str)) and False else", _STR_AS_IS,
         "_turns"),
        *[('f"{where}.output", "tool")', f'f"{{where}}.output", {r})', _TEXT_ROLE, "_turns")
          for r in ("None", '"XXtoolXX"', '"TOOL"')],
        *[('request.instructions, "instructions")', f"request.instructions, {w})", _INSTRUCTIONS_WHERE, "plan_request")
          for w in ("None", "", '"XXinstructionsXX"', '"INSTRUCTIONS"')],
        *[('_turns(input_items, "input")', f"_turns(input_items, {w})", _INPUT_WHERE, "plan_request")
          for w in ("None", '"XXinputXX"', '"INPUT"')],
        ("_choice(request.tool_choice, offered)", "_choice(request.tool_choice, None)", _CHOICE_OFFERED, "plan_request"),
        *[('model_uri.split("://", 1)', f'model_uri.split("://", {n})', _URI_NAME, "create") for n in ("", "2")],
    ],
    # -- shared/jobs/poller.py (h-worker) --
    "shared/jobs/poller.py": [
        ('or operation.get("state") == "done" or clock.now()', 'or operation.get(None) == "done" or clock.now()',
         _DONE_REFUSED, "_expire_if_late"),
        ('or operation.get("state") == "done" or clock.now()', 'or operation.get("XXstateXX") == "done" or clock.now()',
         _DONE_REFUSED, "_expire_if_late"),
        ('or operation.get("state") == "done" or clock.now()', 'or operation.get("STATE") == "done" or clock.now()',
         _DONE_REFUSED, "_expire_if_late"),
        ('store.finish(operation["id"], None, 0, EXPIRED', 'store.finish(operation["id"], None, None, EXPIRED', _ERROR_SIZE),
        ('store.finish(operation["id"], None, 0, EXPIRED', 'store.finish(operation["id"], None, 1, EXPIRED', _ERROR_SIZE),
        ("EXPIRED, deactivate=False)", "EXPIRED, deactivate=None)", _FALSY_DEACTIVATE),
        ('operation.get("deadline_at", 0) or 0', 'operation.get("deadline_at", None) or 0', _NONE_OR_ZERO),
        ('operation.get("deadline_at", 0) or 0', 'operation.get("deadline_at", ) or 0', _NONE_OR_ZERO),
        ("client_request_id=inv.call.client_request_id)", ")", _PACER_CALL, "_before_margin"),
        ('store.item_finished(op_id, index, record["custom_id"],', "store.item_finished(op_id, index, None,", _UPDATE_ONLY),
        ('"outcome": json.dumps(outcome, ensure_ascii=False)}', '"outcome": json.dumps(outcome, )}', _PARSED_AGAIN),
        ('"outcome": json.dumps(outcome, ensure_ascii=False)}', '"outcome": json.dumps(outcome, ensure_ascii=True)}',
         _PARSED_AGAIN),
        ('summary["deadline"] += 1', 'summary["deadline"] = 1', _FIRST_DEADLINE, "_poll_batch"),
        ('range(int(operation.get("tasks_total", 0)))', 'range(int(operation.get("tasks_total", 1)))', _CREATED_RECORD,
         "_requeue_if_stuck"),
        ('float(task.get("lease_until", 0))', 'float(task.get("lease_until", None))', _CREATED_RECORD),
        ('float(task.get("lease_until", 0))', 'float(task.get("lease_until", ))', _CREATED_RECORD),
        ('float(task.get("lease_until", 0))', 'float(task.get("lease_until", 1))', _CREATED_RECORD),
        ('operation.get("kind", "")', 'operation.get("kind", None)', _CREATED_RECORD, "_requeue_if_stuck"),
        ('operation.get("kind", "")', 'operation.get("kind", )', _CREATED_RECORD, "_requeue_if_stuck"),
        ('operation.get("kind", "")', 'operation.get("kind", "XXXX")', _CREATED_RECORD, "_requeue_if_stuck"),
        ("ensure_ascii=False", "ensure_ascii=None", _ASCII_FLAG),
        ("hook.settle(operation, store, inv, records)", "hook.settle(operation, store, inv, None)", _SAME_RECORDS),
        ('{err}"[:300]', '{err}"[:301]', _STORE_ERROR_TEXT, "_record_batch"),
        ('operation.get("requeued_at", 0)', 'operation.get("requeued_at", 1)', _CREATED_RECORD),
        ('operation.get("modified_at", now)', 'operation.get("modified_at", None)', _CREATED_RECORD),
        ('operation.get("modified_at", now)', 'operation.get("modified_at", )', _CREATED_RECORD),
        ('range(int(operation.get("tasks_total", 0)))', 'range(int(operation.get("tasks_total", None)))', _CREATED_RECORD,
         "_requeue_if_stuck"),
        ('range(int(operation.get("tasks_total", 0)))', 'range(int(operation.get("tasks_total", )))', _CREATED_RECORD,
         "_requeue_if_stuck"),
        ('operation.get("task_status", "")', 'operation.get("task_status", None)', _UPSTREAM_METADATA),
        ('operation.get("task_status", "")', 'operation.get("task_status", )', _UPSTREAM_METADATA),
        ('operation.get("task_status", "")', 'operation.get("task_status", "XXXX")', _UPSTREAM_METADATA),
        ('metadata.get("completedBatches", 0) or 0', 'metadata.get("completedBatches", None) or 0', _NONE_OR_ZERO),
        ('metadata.get("completedBatches", 0) or 0', 'metadata.get("completedBatches", ) or 0', _NONE_OR_ZERO),
        ('metadata.get("totalBatches", 0) or 0', 'metadata.get("totalBatches", None) or 0', _NONE_OR_ZERO),
        ('metadata.get("totalBatches", 0) or 0', 'metadata.get("totalBatches", ) or 0', _NONE_OR_ZERO),
        ('json.loads(operation.get("error") or "null")', 'json.loads(operation.get("error") or "XXnullXX")',
         _NO_ERROR_TEXT, "_stop_reason"),
        ('json.loads(operation.get("error") or "null")', 'json.loads(operation.get("error") or "NULL")',
         _NO_ERROR_TEXT, "_stop_reason"),
        ("error = None", 'error = ""', "an error that is no dict is replaced by CANCELLED: None and '' alike",
         "_stop_reason"),
        ("hook.settle(operation, store, inv, None)", "hook.settle(operation, store, None, None)", _DOOR_INV,
         "_sweep_job"),
        ("hook.advance(operation, store, inv)", "hook.advance(operation, store, None)", _DOOR_INV, "_sweep_job"),
        ("hook.settle(operation, store, inv, records)", "hook.settle(operation, store, None, records)", _DOOR_INV),
        ('int(operation.get("items_total", 0))', 'int(operation.get("items_total", None))', _POLL_ITEMS_TOTAL),
        ('int(operation.get("items_total", 0))', 'int(operation.get("items_total", ))', _POLL_ITEMS_TOTAL),
        ('int(operation.get("items_total", 0))', 'int(operation.get("items_total", 1))', _POLL_ITEMS_TOTAL),
        ('"failed": operation.get("items_failed", 0)', '"failed": operation.get("items_failed", None)', _COUNTED,
         "_finish_batch"),
        ('"failed": operation.get("items_failed", 0)', '"failed": operation.get("items_failed", )', _COUNTED,
         "_finish_batch"),
        ('"failed": operation.get("items_failed", 0)', '"failed": operation.get("items_failed", 1)', _COUNTED,
         "_finish_batch"),
        ('float(record.get("next_poll_at", 0))', 'float(record.get("next_poll_at", None))', _ITEM_RECORD, "_poll_batch"),
        ('float(record.get("next_poll_at", 0))', 'float(record.get("next_poll_at", ))', _ITEM_RECORD, "_poll_batch"),
        ('float(record.get("next_poll_at", 0))', 'float(record.get("next_poll_at", 1))', _ITEM_RECORD, "_poll_batch"),
        ('int(record.get("polls", 0))', 'int(record.get("polls", None))', _ITEM_RECORD, "_poll_batch"),
        ('int(record.get("polls", 0))', 'int(record.get("polls", ))', _ITEM_RECORD, "_poll_batch"),
        ('int(record.get("polls", 0))', 'int(record.get("polls", 1))', _ITEM_RECORD, "_poll_batch"),
        ('int(operation.get("items_done", 0))', 'int(operation.get("items_done", None))', _BATCH_NUMBERS, "_poll_batch"),
        ('int(operation.get("items_done", 0))', 'int(operation.get("items_done", ))', _BATCH_NUMBERS, "_poll_batch"),
        ('int(operation.get("items_done", 0))', 'int(operation.get("items_done", 1))', _BATCH_NUMBERS, "_poll_batch"),
        ('int(operation.get("items_failed", 0))', 'int(operation.get("items_failed", None))', _BATCH_NUMBERS, "_poll_batch"),
        ('int(operation.get("items_failed", 0))', 'int(operation.get("items_failed", ))', _BATCH_NUMBERS, "_poll_batch"),
        ('int(operation.get("items_failed", 0))', 'int(operation.get("items_failed", 1))', _BATCH_NUMBERS, "_poll_batch"),
        ('int(fresh.get("tasks_done", 0))', 'int(fresh.get("tasks_done", None))', _CREATED, "_poll_batch"),
        ('int(fresh.get("tasks_done", 0))', 'int(fresh.get("tasks_done", ))', _CREATED, "_poll_batch"),
        ('int(fresh.get("tasks_done", 0))', 'int(fresh.get("tasks_done", 1))', _CREATED, "_poll_batch"),
        ('int(operation.get("tasks_total", 0))', 'int(operation.get("tasks_total", None))', _CREATED, "_poll_batch"),
        ('int(operation.get("tasks_total", 0))', 'int(operation.get("tasks_total", ))', _CREATED, "_poll_batch"),
        ('int(operation.get("tasks_total", 0))', 'int(operation.get("tasks_total", 1))', _CREATED, "_poll_batch"),
        ('operation.get("state") == "done" or clock.now() < deadline',
         'operation.get("state") == "XXdoneXX" or clock.now() < deadline', _FINISH_DONE, "_expire_if_late"),
        ('operation.get("state") == "done" or clock.now() < deadline',
         'operation.get("state") == "DONE" or clock.now() < deadline', _FINISH_DONE, "_expire_if_late"),
        ("client_request_id=inv.call.client_request_id)", "client_request_id=None)",
         "the Call with the deadline moved up is handed only to Pacer.acquire, which reads its deadline only",
         "_before_margin"),
    ],
    # -- shared/jobs/worker.py (h-engine) --
    "shared/jobs/worker.py": [
        ('str(details.get("queue_id", ""))', 'str(details.get("queue_id", None))', _TRIGGER_SHAPE, "consume"),
        ('str(details.get("queue_id", ""))', 'str(details.get("queue_id", ))', _TRIGGER_SHAPE, "consume"),
        ('str(details.get("queue_id", ""))', 'str(details.get("queue_id", "XXXX"))', _TRIGGER_SHAPE, "consume"),
        ('.get("message", {}).get("body", "") for m in', '.get("message", None).get("body", "") for m in', _TRIGGER_SHAPE,
         "consume"),
        ('.get("message", {}).get("body", "") for m in', '.get("message", ).get("body", "") for m in', _TRIGGER_SHAPE,
         "consume"),
        ("(dead_letter if dead else process)(kind, body,", "(dead_letter if dead else process)(None, body,",
         _KIND_FROM_RECORD, "consume"),
        ("json.dumps(result, ensure_ascii=False)", "json.dumps(result, ensure_ascii=None)", _ASCII_FLAG, "process"),
        ('kind = operation.get("kind", kind)', 'kind = operation.get("kind", None)', _CREATED_RECORD, "process"),
        ('kind = operation.get("kind", kind)', 'kind = operation.get("kind", )', _CREATED_RECORD, "process"),
        ('operation.get("state") == "done" or operation.get("kind") == "batch"',
         'operation.get("state") == "XXdoneXX" or operation.get("kind") == "batch"', _DONE_FINALIZED, "finalize"),
        ('operation.get("state") == "done" or operation.get("kind") == "batch"',
         'operation.get("state") == "DONE" or operation.get("kind") == "batch"', _DONE_FINALIZED, "finalize"),
        ('operation.get("state") == "done" or operation.get("kind") == "batch"',
         'operation.get(None) == "done" or operation.get("kind") == "batch"', _DONE_FINALIZED, "finalize"),
        ('operation.get("state") == "done" or operation.get("kind") == "batch"',
         'operation.get("XXstateXX") == "done" or operation.get("kind") == "batch"', _DONE_FINALIZED, "finalize"),
        ('operation.get("state") == "done" or operation.get("kind") == "batch"',
         'operation.get("STATE") == "done" or operation.get("kind") == "batch"', _DONE_FINALIZED, "finalize"),
        ('log.info("operation done", extra={"operation_id": op_id,', 'log.info("operation done", extra={"XXoperation_idXX": op_id,',
         _BOUND_ID),
        ('log.info("operation done", extra={"operation_id": op_id,', 'log.info("operation done", extra={"OPERATION_ID": op_id,',
         _BOUND_ID),
        ("json.dumps(response, ensure_ascii=False)", "json.dumps(response, )", _ASCII_RESPONSE, "finalize"),
        ("json.dumps(response, ensure_ascii=False)", "json.dumps(response, ensure_ascii=True)", _ASCII_RESPONSE, "finalize"),
        ("store.finish(op_id, None, 0, err.to_status(),", "store.finish(op_id, None, 1, err.to_status(),", _NO_SIZE,
         "process"),
        ("store.finish(op_id, None, 0, err.to_status(),", "store.finish(op_id, None, None, err.to_status(),", _NO_SIZE,
         "process"),
        ('.get("body", "") for m in messages[index:]', '.get("body", None) for m in messages[index:]', _TRIGGER_BODY, "consume"),
        ('.get("body", "") for m in messages[index:]', '.get("body", ) for m in messages[index:]', _TRIGGER_BODY, "consume"),
        ('.get("body", "") for m in messages[index:]', '.get("body", "XXXX") for m in messages[index:]', _TRIGGER_BODY, "consume"),
        ('extra={"operation_id": op_id, "error": err.message}', 'extra={"XXoperation_idXX": op_id, "error": err.message}',
         _BOUND, "process"),
        ('extra={"operation_id": op_id, "error": err.message}', 'extra={"OPERATION_ID": op_id, "error": err.message}',
         _BOUND, "process"),
        ("zip(flat, results, strict=True)", "zip(flat, results, strict=None)", _SAME_LENGTH, "embed_requests"),
        ("zip(flat, results, strict=True)", "zip(flat, results, )", _SAME_LENGTH, "embed_requests"),
        ("zip(flat, results, strict=True)", "zip(flat, results, strict=False)", _SAME_LENGTH, "embed_requests"),
        ('str(operation.get("kind", ""))', 'str(operation.get("kind", None))', _HAS_KIND, "_queue_kind"),
        ('str(operation.get("kind", ""))', 'str(operation.get("kind", ))', _HAS_KIND, "_queue_kind"),
        ('str(operation.get("kind", ""))', 'str(operation.get("kind", "XXXX"))', _HAS_KIND, "_queue_kind"),
        ('p.get("numTokens", 0) or 0', 'p.get("numTokens", None) or 0', _OR_ZERO),
        ('p.get("numTokens", 0) or 0', 'p.get("numTokens", ) or 0', _OR_ZERO),
        ('r.get("numTokens", 0) or 0', 'r.get("numTokens", None) or 0', _OR_ZERO),
        ('task.get("attempts", 0) or 0', 'task.get("attempts", None) or 0', _OR_ZERO, "dead_letter"),
        ('task.get("attempts", 0) or 0', 'task.get("attempts", ) or 0', _OR_ZERO, "dead_letter"),
        ('r.get("numTokens", 0) or 0', 'r.get("numTokens", ) or 0', _OR_ZERO),
        ("limits.release_job(operation, inv.settings)", "limits.release_job(operation, None)",
         "release_job reads the settings only to find the instance's store, which process or dead_letter has just "
         "used (job_store returns that one whatever it is given), and Settle.finish never reads them", "_release"),
        ('message.get("details", {}).get("message", {})', 'message.get("details", None).get("message", {})', _DETAILS,
         "dead_letter"),
        ('message.get("details", {}).get("message", {})', 'message.get("details", ).get("message", {})', _DETAILS,
         "dead_letter"),
        ('operation.get("tasks_total", 1)', 'operation.get("tasks_total", None)', _CREATED, 'finalize'),
        ('operation.get("tasks_total", 1)', 'operation.get("tasks_total", )', _CREATED, 'finalize'),
        ('operation.get("tasks_total", 1)', 'operation.get("tasks_total", 2)', _CREATED, 'finalize'),
        ('operation.get("tasks_done", 0)', 'operation.get("tasks_done", None)', _CREATED, 'finalize'),
        ('operation.get("tasks_done", 0)', 'operation.get("tasks_done", )', _CREATED, 'finalize'),
        ('operation.get("tasks_done", 0)', 'operation.get("tasks_done", 1)', _CREATED, 'finalize'),
        ('float(operation.get("created_at", 0) or 0)', 'float(operation.get("created_at", None) or 0)', _CREATED, 'dead_letter'),
        ('float(operation.get("created_at", 0) or 0)', 'float(operation.get("created_at", ) or 0)', _CREATED, 'dead_letter'),
        ('float(operation.get("created_at", 0) or 0)', 'float(operation.get("created_at", 1) or 0)', _CREATED, 'dead_letter'),
        ('float(operation.get("created_at", 0) or 0)', 'float(operation.get("created_at", 0) or 1)', _CREATED, 'dead_letter'),
        ('float(task.get("started_at", 0) or 0)', 'float(task.get("started_at", None) or 0)', _EPOCH, 'dead_letter'),
        ('float(task.get("started_at", 0) or 0)', 'float(task.get("started_at", ) or 0)', _EPOCH, 'dead_letter'),
        ('float(task.get("started_at", 0) or 0)', 'float(task.get("started_at", 1) or 0)', _EPOCH, 'dead_letter'),
        ('float(task.get("started_at", 0) or 0)', 'float(task.get("started_at", 0) or 1)', _EPOCH, 'dead_letter'),
        ('float(task.get("lease_until", 0) or 0)', 'float(task.get("lease_until", None) or 0)', _EPOCH, 'dead_letter'),
        ('float(task.get("lease_until", 0) or 0)', 'float(task.get("lease_until", ) or 0)', _EPOCH, 'dead_letter'),
        ('float(task.get("lease_until", 0) or 0)', 'float(task.get("lease_until", 1) or 0)', _EPOCH, 'dead_letter'),
        ('float(task.get("lease_until", 0) or 0)', 'float(task.get("lease_until", 0) or 1)', _EPOCH, 'dead_letter'),
        ('.get("message", {}).get("attributes")', '.get("message", None).get("attributes")', _READ_BODY, "dead_letter"),
        ('.get("message", {}).get("attributes")', '.get("message", ).get("attributes")', _READ_BODY, "dead_letter"),
        ('.get("last_error", "")', '.get("last_error", None)', _LAST_OR, "_dead_chunk"),
        ('.get("last_error", "")', '.get("last_error", )', _LAST_OR, "_dead_chunk"),
        ("store.finish(op_id, None, 0, error,", "store.finish(op_id, None, None, error,", _NO_SIZE, "dead_letter"),
        ("store.finish(op_id, None, 0, error,", "store.finish(op_id, None, 1, error,", _NO_SIZE, "dead_letter"),
        ('kind = operation.get("kind", "")', 'kind = operation.get("kind", None)', _HAS_KIND, "finalize"),
        ('kind = operation.get("kind", "")', 'kind = operation.get("kind", )', _HAS_KIND, "finalize"),
        ('kind = operation.get("kind", "")', 'kind = operation.get("kind", "XXXX")', _HAS_KIND, "finalize"),
        ('RESPONSE_TYPES.get(kind, "")', "RESPONSE_TYPES.get(kind, None)", _MERGED, "finalize"),
        ('RESPONSE_TYPES.get(kind, "")', "RESPONSE_TYPES.get(kind, )", _MERGED, "finalize"),
        ('RESPONSE_TYPES.get(kind, "")', 'RESPONSE_TYPES.get(kind, "XXXX")', _MERGED, "finalize"),
        ("json.dumps(response, ensure_ascii=False)", "json.dumps(response, ensure_ascii=None)",
         "json.dumps only tests ensure_ascii for truth", "finalize"),
        ("finalize(op_id, store, inv.settings)", "finalize(op_id, store, None)",
         "finalize never reads its settings argument (the store it is given is the instance's)"),
        ("max(inv.call.remaining(), 0)", "max(inv.call.remaining(), 1)",
         "a message is taken only with at least MIN_TIME_FOR_A_MESSAGE_S (5 s) left (consume gives the rest back); "
         "before the claim come only a few store reads, so the remaining time is above both floors unless those "
         "take over 4 s (then the lease differs by at most 1 s)"),
        ("store = job_store(inv.settings)", "store = job_store(None)",
         "dead_letter, the only caller, has just called job_store(inv.settings), so the instance's store exists and "
         "is returned whatever the argument", "_dead_chunk"),
    ],
    # -- the OpenAI Files and Batch API --
    "shared/openai/files.py": [
        ("request.body if request is not None else", "request.body if (request is not None) or True else", _HTTP_ONLY),
        ('request.body if request is not None else b""', 'request.body if request is not None else b"XXXX"', _HTTP_ONLY),
        ('"") if request is not None else "")', '"") if (request is not None) or True else "")', _HTTP_ONLY),
        ('"") if request is not None else "")', '"") if request is not None else "XXXX")', _HTTP_ONLY),
        ('request.header("content-type", "")', 'request.header("content-type", None)', _NO_FORM_TYPE),
        ('request.header("content-type", "")', 'request.header("content-type", )', _NO_FORM_TYPE),
        ('request.header("content-type", "")', 'request.header("CONTENT-TYPE", "")', _NO_FORM_TYPE),
        ('request.header("content-type", "")', 'request.header("content-type", "XXXX")', _NO_FORM_TYPE),
        ('.decode("utf-8", "replace")', '.decode("UTF-8", "replace")', _UTF8),
        ('.decode("latin-1")', '.decode("LATIN-1")', "codec names are case-insensitive"),
        ('header["field"] += data[start:end]', 'header["field"] = data[start:end]', _ONE_WRITE),
        ('header["value"] += data[start:end]', 'header["value"] = data[start:end]', _ONE_WRITE),
        ('parts[-1]["data"] += data[start:end]', 'parts[-1]["data"] = data[start:end]', _ONE_WRITE),
        ("ended.append(True)", "ended.append(None)", _LIST_FILLED),
        ("ended.append(True)", "ended.append(False)", _LIST_FILLED),
        ('get("file_id", "")', 'get("file_id", None)', _FILE_PARAM),
        ('get("file_id", "")', 'get("file_id", )', _FILE_PARAM),
        ('get("file_id", "")', 'get("file_id", "XXXX")', _FILE_PARAM),
        ("job_store(inv.settings)", "job_store(None)", _ONE_STORE, "content"),
        ("job_store(inv.settings)", "job_store(None)", _ONE_STORE, "delete"),
        ('record.get("bytes", 0)', 'record.get("bytes", None)', _FILE_RECORD),
        ('record.get("bytes", 0)', 'record.get("bytes", )', _FILE_RECORD),
        ('record.get("bytes", 0)', 'record.get("bytes", 1)', _FILE_RECORD),
        ('record.get("object_key") or', 'record.get("object_key") and', _FILE_RECORD),
        ('record.get("object_key")', 'record.get(None)', _FILE_RECORD),
        ('record.get("object_key")', 'record.get("XXobject_keyXX")', _FILE_RECORD),
        ('record.get("object_key")', 'record.get("OBJECT_KEY")', _FILE_RECORD),
        ("f\"files/{record['id']}\"", "f\"files/{record['XXidXX']}\"", _FILE_RECORD),
        ("f\"files/{record['id']}\"", "f\"files/{record['ID']}\"", _FILE_RECORD),
        ('or "application/octet-stream"})', 'or "XXapplication/octet-streamXX"})', _FILE_RECORD),
        ('or "application/octet-stream"})', 'or "APPLICATION/OCTET-STREAM"})', _FILE_RECORD),
        ("if inv.request is not None else", "if (inv.request is not None) or True else", _HTTP_ONLY),
        ("startswith(batch_store.FILE_PREFIX) and len(file_id)", "startswith(batch_store.FILE_PREFIX) or len(file_id)",
         _OUR_IDS),
        ("len(file_id) <= 64", "len(file_id) < 64", _OUR_IDS),
        ("len(file_id) <= 64", "len(file_id) <= 65", _OUR_IDS),
        ('.decode("utf-8")', '.decode("UTF-8")', "codec names are case-insensitive"),
    ],
    # -- shared/openai/batch_store.py --
    "shared/openai/batch_store.py": [
        ('record.get("bytes", 0)', 'record.get("bytes", None)', _SAVED_FILE, "file_object"),
        ('record.get("bytes", 0)', 'record.get("bytes", )', _SAVED_FILE, "file_object"),
        ('record.get("bytes", 0)', 'record.get("bytes", 1)', _SAVED_FILE, "file_object"),
        ('record.get("created_at", 0)', 'record.get("created_at", None)', _SAVED_FILE, "file_object"),
        ('record.get("created_at", 0)', 'record.get("created_at", )', _SAVED_FILE, "file_object"),
        ('record.get("created_at", 0)', 'record.get("created_at", 1)', _SAVED_FILE, "file_object"),
        ('record.get("expires_at", 0)', 'record.get("expires_at", None)', _SAVED_FILE, "file_object"),
        ('record.get("expires_at", 0)', 'record.get("expires_at", )', _SAVED_FILE, "file_object"),
        ('record.get("expires_at", 0)', 'record.get("expires_at", 1)', _SAVED_FILE, "file_object"),
        ('record.get("filename", "")', 'record.get("filename", None)', _SAVED_FILE, "file_object"),
        ('record.get("filename", "")', 'record.get("filename", )', _SAVED_FILE, "file_object"),
        ('record.get("filename", "")', 'record.get("filename", "XXXX")', _SAVED_FILE, "file_object"),
        ('record.get("purpose", "")', 'record.get("purpose", None)', _SAVED_FILE, "file_object"),
        ('record.get("purpose", "")', 'record.get("purpose", )', _SAVED_FILE, "file_object"),
        ('record.get("purpose", "")', 'record.get("purpose", "XXXX")', _SAVED_FILE, "file_object"),
        ("int(clock.now() * 1000)", "int(None)", _STORE_OUR_IDS, "add_to_list"),
        ("int(clock.now() * 1000)", "int(clock.now() / 1000)", _STORE_OUR_IDS, "add_to_list"),
        ("int(clock.now() * 1000)", "int(clock.now() * 1001)", _STORE_OUR_IDS, "add_to_list"),
        ("or clock.now() * 1000) / 1000", "or clock.now() / 1000) / 1000", _STORE_OUR_IDS, "save_file"),
        ("or clock.now() * 1000) / 1000", "or clock.now() * 1001) / 1000", _STORE_OUR_IDS, "save_file"),
        ('record.get("created_by", "")', 'record.get("created_by", None)', _STORE_DELETED, "delete_file"),
        ('record.get("created_by", "")', 'record.get("created_by", )', _STORE_DELETED, "delete_file"),
        ('record.get("created_by", "")', 'record.get("created_by", "XXXX")', _STORE_DELETED, "delete_file"),
        ('record.get("object_key") or f"files/', 'record.get("object_key") and f"files/', _STORE_DELETED, "delete_file"),
        ('record.get("object_key") or', 'record.get(None) or', _STORE_DELETED, "delete_file"),
        ('record.get("object_key") or', 'record.get("XXobject_keyXX") or', _STORE_DELETED, "delete_file"),
        ('record.get("object_key") or', 'record.get("OBJECT_KEY") or', _STORE_DELETED, "delete_file"),
        ("f\"files/{record['id']}\"", "f\"files/{record['XXidXX']}\"", _STORE_DELETED, "delete_file"),
        ("f\"files/{record['id']}\"", "f\"files/{record['ID']}\"", _STORE_DELETED, "delete_file"),
        ('record.get("expires_at", 0) or 0', 'record.get("expires_at", None) or 0', _NO_EXPIRY, "expired"),
        ('record.get("expires_at", 0) or 0', 'record.get("expires_at", ) or 0', _NO_EXPIRY, "expired"),
        ('record.get("expires_at", 0) or 0', 'record.get("expires_at", 1) or 0', _NO_EXPIRY, "expired"),
        ('record.get("expires_at", 0) or 0', 'record.get("expires_at", 0) or 1', _NO_EXPIRY, "expired"),
        ("os.urandom(7).hex()[:13]", "os.urandom(8).hex()[:13]", _RANDOM_13, "new_batch_job_id"),
        ("* 1000 - 3_600_000", "* 1000 - 3600001", _WHOLE_HOURS, "page"),
        ("while ms >= end_ms:", "while ms > end_ms:", _LAST_HOUR, "page"),
        ("not expired(record, now)", "not expired(record, None)", _SAME_NOW, "page"),
        ("not expired(record, now)", "not expired(record, )", _SAME_NOW, "page"),
    ],
    "shared/openai/batches.py": [
        ('inv.path_params.get("batch_id", "")', 'inv.path_params.get("batch_id", None)', _BATCH_PARAM),
        ('inv.path_params.get("batch_id", "")', 'inv.path_params.get("batch_id", )', _BATCH_PARAM),
        ('inv.path_params.get("batch_id", "")', 'inv.path_params.get("batch_id", "XXXX")', _BATCH_PARAM),
        ("job_store(inv.settings).item(record", "job_store(None).item(record", _ONE_STORE, "cancel"),
        ("inv.request.query if inv.request is not None else", "inv.request.query if (inv.request is not None) or True else",
         _HTTP_ONLY),
        ('data.decode("utf-8")', 'data.decode("UTF-8")', _UTF8),
        ('"The file is not UTF-8 text.", None, None)', '"The file is not UTF-8 text.", None)', _PARAM_DEFAULT),
        ('"The file is not UTF-8 text.", None, None)', '"The file is not UTF-8 text.", None, )', _PARAM_DEFAULT),
        ('d.get("@type") == "field"), None)', 'd.get("@type") == "field"), )', _LINE_FIELD),
        ('f"body.{err.message}" if field else', 'f"body.{err.message}" if (field) or True else', _LINE_FIELD),
        ('f"body.{field}" if field else "body"', 'f"body.{field}" if (field) or True else "body"', _LINE_FIELD),
        ('f"body.{field}" if field else "body"', 'f"body.{field}" if field else "XXbodyXX"', _LINE_FIELD),
        ('f"body.{field}" if field else "body"', 'f"body.{field}" if field else "BODY"', _LINE_FIELD),
        ('numbers={"items_total": 0, "items_done": 0, "items_failed": 0})', "numbers=None)", _COUNTS_DEFAULT),
        ('numbers={"items_total": 0, "items_done": 0, "items_failed": 0})', ")", _COUNTS_DEFAULT),
        ('"items_total": 0, "items_done": 0, "items_failed": 0}', '"XXitems_totalXX": 0, "items_done": 0, "items_failed": 0}',
         _COUNTS_DEFAULT),
        ('"items_total": 0, "items_done": 0, "items_failed": 0}', '"ITEMS_TOTAL": 0, "items_done": 0, "items_failed": 0}',
         _COUNTS_DEFAULT),
        ('"items_done": 0, "items_failed": 0', '"XXitems_doneXX": 0, "items_failed": 0', _COUNTS_DEFAULT),
        ('"items_done": 0, "items_failed": 0', '"ITEMS_DONE": 0, "items_failed": 0', _COUNTS_DEFAULT),
        ('"items_done": 0, "items_failed": 0', '"items_done": 0, "XXitems_failedXX": 0', _COUNTS_DEFAULT),
        ('"items_done": 0, "items_failed": 0', '"items_done": 0, "ITEMS_FAILED": 0', _COUNTS_DEFAULT),
        ("store.finish(job_id, None, 0,", "store.finish(job_id, None, None,", _ERROR_SIZE),
        ("store.finish(job_id, None, 0,", "store.finish(job_id, None, 1,", _ERROR_SIZE),
        ('source.get("object_key") or f"files/', 'source.get("object_key") and f"files/', _FILE_RECORD),
        ('source.get("object_key") or', 'source.get(None) or', _FILE_RECORD),
        ('source.get("object_key") or', 'source.get("XXobject_keyXX") or', _FILE_RECORD),
        ('source.get("object_key") or', 'source.get("OBJECT_KEY") or', _FILE_RECORD),
        ("f\"files/{source['id']}\"", "f\"files/{source['XXidXX']}\"", _FILE_RECORD),
        ("f\"files/{source['id']}\"", "f\"files/{source['ID']}\"", _FILE_RECORD),
        ("ensure_ascii=False", "ensure_ascii=None", _ASCII_FLAG),
        ('int(record.get("items_total", 0))', 'int(record.get("items_total", 1))', _OA_BATCH_RECORD),
        ('int(record.get("items_done", 0))', 'int(record.get("items_done", 1))', _OA_BATCH_RECORD),
        ('int(record.get("items_failed", 0))', 'int(record.get("items_failed", 1))', _OA_BATCH_RECORD, "batch_object"),
        ('int(record.get("created_at", 0))', 'int(record.get("created_at", None))', _OA_BATCH_RECORD, "batch_object"),
        ('int(record.get("created_at", 0))', 'int(record.get("created_at", ))', _OA_BATCH_RECORD, "batch_object"),
        ('int(record.get("created_at", 0))', 'int(record.get("created_at", 1))', _OA_BATCH_RECORD, "batch_object"),
        ('int(record.get("modified_at", 0))', 'int(record.get("modified_at", 1))', _OA_BATCH_RECORD, "batch_object"),
        ('batch_store.batch_id(record.get("id", ""))', 'batch_store.batch_id(record.get("id", None))', _OA_BATCH_RECORD),
        ('batch_store.batch_id(record.get("id", ""))', 'batch_store.batch_id(record.get("id", ))', _OA_BATCH_RECORD),
        ('batch_store.batch_id(record.get("id", ""))', 'batch_store.batch_id(record.get("id", "XXXX"))', _OA_BATCH_RECORD),
        ('door.get("endpoint", "")', 'door.get("endpoint", None)', _OA_DOOR_JSON, "batch_object"),
        ('door.get("endpoint", "")', 'door.get("endpoint", )', _OA_DOOR_JSON, "batch_object"),
        ('door.get("endpoint", "")', 'door.get("endpoint", "XXXX")', _OA_DOOR_JSON, "batch_object"),
        ('door.get("input_file_id", "")', 'door.get("input_file_id", None)', _OA_DOOR_JSON, "batch_object"),
        ('door.get("input_file_id", "")', 'door.get("input_file_id", )', _OA_DOOR_JSON, "batch_object"),
        ('door.get("input_file_id", "")', 'door.get("input_file_id", "XXXX")', _OA_DOOR_JSON, "batch_object"),
        ('error.get("message", "")', 'error.get("message", None)', _JOB_ERROR, "batch_object"),
        ('error.get("message", "")', 'error.get("message", )', _JOB_ERROR, "batch_object"),
        ('error.get("message", "")', 'error.get("message", "XXXX")', _JOB_ERROR, "batch_object"),
        ('int(record.get("oa_settled_at", 0))', 'int(record.get("oa_settled_at", 1))', _SETTLED_FIELDS),
        ('int(record.get("oa_completed", 0))', 'int(record.get("oa_completed", 1))', _SETTLED_FIELDS),
        ('int(record.get("oa_failed", 0))', 'int(record.get("oa_failed", 1))', _SETTLED_FIELDS),
    ],
    "shared/openai/batch_output.py": [
        ("door, stop, error, int(clock.now()))", "door, stop, None, int(clock.now()))", _CHAT_STOPS, "_chat_outcomes"),
        ("records, door, stop, error)", "records, door, stop, None)", _CHAT_STOPS, "settle"),
        ('task.get("state") == "done" and task.get("result_key")', 'task.get("state") == "done" or task.get("result_key")',
         _RESULT_ONCE_DONE, "_embedding_outcomes"),
        ('{"oa_settled": 1}', '{"oa_settled": 2}', _SETTLED_FLAG, "settle"),
        ('operation.get("tasks_total", 0)', 'operation.get("tasks_total", None)', _TASKS_TOTAL),
        ('operation.get("tasks_total", 0)', 'operation.get("tasks_total", )', _TASKS_TOTAL),
        ('operation.get("tasks_total", 0)', 'operation.get("tasks_total", 1)', _TASKS_TOTAL),
        ('operation.get("oa_counted")', 'operation.get(None)', _COUNTED_ONCE),
        ('operation.get("oa_counted")', 'operation.get("XXoa_countedXX")', _COUNTED_ONCE),
        ('operation.get("oa_counted")', 'operation.get("OA_COUNTED")', _COUNTED_ONCE),
        ("or str(number) in counted or not", "or str(number) in counted and not", _COUNTED_ONCE),
        ("or str(number) in counted", "or str(None) in counted", _COUNTED_ONCE),
        ('task.get("state") != "done" or str(number) in counted', 'task.get("state") != "done" and str(number) in counted',
         _RESULT_ONCE_DONE),
        ('"items_failed": failed}, "oa_counted"', '"items_failed": failed}, "XXoa_countedXX"', _MARK_SET),
        ('"items_failed": failed}, "oa_counted"', '"items_failed": failed}, "OA_COUNTED"', _MARK_SET),
        ('.get("requests", [])', '.get("requests", None)', _TASK_RESULT),
        ('.get("requests", [])', '.get("requests", )', _TASK_RESULT),
        ("fresh = store.item(op_id) or operation", "fresh = store.item(op_id) and operation", _STALE_ROUND, "advance"),
        ('fresh.get("tasks_done", 0)', 'fresh.get("tasks_done", None)', _TASKS_DONE),
        ('fresh.get("tasks_done", 0)', 'fresh.get("tasks_done", )', _TASKS_DONE),
        ('fresh.get("tasks_done", 0)', 'fresh.get("tasks_done", 1)', _TASKS_DONE),
        ("if records is None:", "if records is not None:", _RECORDS_HANDED),
        ("records = store.items(op_id, list(range(total)))", "records = None", _RECORDS_HANDED),
        ("records = store.items(op_id, list(range(total)))", "records = store.items(None, list(range(total)))",
         _RECORDS_HANDED),
        ("records = store.items(op_id, list(range(total)))", "records = store.items(op_id, None)", _RECORDS_HANDED),
        ("records = store.items(op_id, list(range(total)))", "records = store.items(list(range(total)))",
         _RECORDS_HANDED),
        ("records = store.items(op_id, list(range(total)))", "records = store.items(op_id, )", _RECORDS_HANDED),
        ("records = store.items(op_id, list(range(total)))", "records = store.items(op_id, list(None))",
         _RECORDS_HANDED),
        ("records = store.items(op_id, list(range(total)))", "records = store.items(op_id, list(range(None)))",
         _RECORDS_HANDED),
        ("if missing or responses else", "if (missing or responses) or True else", _RECORDS_HANDED),
        ('int(operation.get("items_total", 0))', 'int(operation.get("items_total", None))', _ITEMS_TOTAL),
        ('int(operation.get("items_total", 0))', 'int(operation.get("items_total", ))', _ITEMS_TOTAL),
        ('int(operation.get("items_total", 0))', 'int(operation.get("items_total", 1))', _ITEMS_TOTAL),
        ('if fresh.get("kind") != "batch" else None', 'if (fresh.get("kind") != "batch") or True else None',
         _RETURN_IGNORED),
        ('if fresh.get("kind") != "batch" else None', 'if fresh.get(None) != "batch" else None', _RETURN_IGNORED),
        ('if fresh.get("kind") != "batch" else None', 'if fresh.get("XXkindXX") != "batch" else None', _RETURN_IGNORED),
        ('if fresh.get("kind") != "batch" else None', 'if fresh.get("KIND") != "batch" else None', _RETURN_IGNORED),
        ('if fresh.get("kind") != "batch" else None', 'if fresh.get("kind") != "XXbatchXX" else None', _RETURN_IGNORED),
        ('if fresh.get("kind") != "batch" else None', 'if fresh.get("kind") != "BATCH" else None', _RETURN_IGNORED),
        ('fresh.get("oa_native_key", "")', 'fresh.get("oa_native_key", None)', _NATIVE_KEPT),
        ('fresh.get("oa_native_key", "")', 'fresh.get("oa_native_key", )', _NATIVE_KEPT),
        ('fresh.get("oa_native_key", "")', 'fresh.get("oa_native_key", "XXXX")', _NATIVE_KEPT),
        ('fresh.get("oa_native_size", 0)', 'fresh.get("oa_native_size", None)', _NATIVE_KEPT),
        ('fresh.get("oa_native_size", 0)', 'fresh.get("oa_native_size", )', _NATIVE_KEPT),
        ('fresh.get("oa_native_size", 0)', 'fresh.get("oa_native_size", 1)', _NATIVE_KEPT),
        ("fresh = store.item(op_id) or operation", "fresh = store.item(op_id) and operation", _SETTLE_FRESH, "settle"),
        ('owner = fresh.get("created_by", "")', 'owner = fresh.get("created_by", None)', _OWNER),
        ('owner = fresh.get("created_by", "")', 'owner = fresh.get("created_by", )', _OWNER),
        ('owner = fresh.get("created_by", "")', 'owner = fresh.get("created_by", "XXXX")', _OWNER),
        ("ensure_ascii=False", "ensure_ascii=None", "None is false, as False is: nothing is escaped either way"),
        ('batch_store.loads(fresh.get("oa"), {})', 'batch_store.loads(fresh.get("oa"), None)', _DOOR_FIELDS),
        ('batch_store.loads(fresh.get("oa"), {})', 'batch_store.loads(fresh.get("oa"), )', _DOOR_FIELDS),
        ('isinstance(error, dict) and fresh.get("state") == "done"', 'isinstance(error, dict) or fresh.get("state") == "done"',
         _STOPPED_WITH_ERROR),
        ("_chat_outcomes(fresh, store, records, door", "_chat_outcomes(fresh, store, None, door", _RECORDS_HANDED),
        ("native = None", 'native = ""', _RETURN_IGNORED),
        ("answers = None", 'answers = ""', "batch_outcomes.embedding_outcomes reads a task's answers only at a "
         "position < len(answers): '' has none, so its requests are not run either way, as with None"),
    ],
}

STATUS_KILLED = {"killed", "timeout", "caught by type check"}


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True)


def expand(patterns: list[str]) -> list[str]:
    found: list[str] = []
    for pattern in patterns:
        found += sorted(str(p.relative_to(ROOT)) for p in ROOT.glob(pattern)) if "*" in pattern else (
            [pattern] if (ROOT / pattern).exists() else [])
    return found


def prepare(module: str, tests: list[str]) -> Path:
    """A scratch copy of the repository whose pyproject.toml points mutmut at this module and its tests."""
    work = WORK / re.sub(r"[^A-Za-z0-9]+", "-", module).strip("-")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name in COPIED:
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__", ".mutmut"))
    pytest_options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    lines = ["[tool.pytest.ini_options]"]
    lines += [f"{key} = {_toml(value)}" for key, value in pytest_options.items()]
    sources = ["shared"] + ([module.split("/")[0]] if not module.startswith("shared/") else [])
    lines += ["", "[tool.mutmut]", f"source_paths = {_toml(sources)}", f"only_mutate = {_toml([module])}",
              f"also_copy = {_toml([n for n in COPIED if n not in sources])}",
              f"pytest_add_cli_args_test_selection = {_toml(tests)}",
              'pytest_add_cli_args = ["-p", "no:cacheprovider"]',
              # each mutant's tests run in a process forked from a clean server, not from the process that
              # already ran the whole selection (whose leftovers, such as registered secrets, hide mutants)
              'process_isolation = "forkserver"']
    (work / "pyproject.toml").write_text("\n".join(lines) + "\n")
    return work


def _toml(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def changed_lines(diff: str) -> tuple[str, str]:
    removed = " ".join(line[1:].strip() for line in diff.splitlines() if line.startswith("-") and not line.startswith("---"))
    added = " ".join(line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++"))
    return removed, added


def has_functions(module: str) -> bool:
    """mutmut mutates code inside functions only: a module of declarations has no mutant (and mutmut stops on it)."""
    import ast

    tree = ast.parse((ROOT / module).read_text())
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) for node in ast.walk(tree))


def measure(module: str, test_patterns: list[str], jobs: int) -> dict[str, object]:
    started = time.monotonic()
    if not has_functions(module):
        print(f"== {module}: no function, so no mutant (declarations only); reported as 0 mutants", flush=True)
        return {"module": module, "total": 0, "killed": 0, "equivalent": 0, "survived": 0, "score": 100.0, "wall": 0.0}
    tests = expand(test_patterns)
    work = prepare(module, tests)
    mutmut = [sys.executable, "-m", "mutmut"]
    print(f"== {module}: mutating against {len(tests)} test files", flush=True)
    if subprocess.run(mutmut + ["run", "--max-children", str(jobs)], cwd=work).returncode != 0:
        raise SystemExit(f"mutmut run failed for {module} (its output is above; the scratch copy is {work})")
    statuses: dict[str, str] = {}
    for line in run(mutmut + ["results", "--all", "true"], work).stdout.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            statuses[name] = status
    equivalent_rules = [(rule[0].strip(), rule[1].strip(), rule[2], rule[3] if len(rule) > 3 else "")
                        for rule in EQUIVALENT.get(module, [])]
    survivors: list[tuple[str, str, str]] = []
    equivalent: list[tuple[str, str]] = []
    used: set[int] = set()
    for name, status in sorted(statuses.items()):
        if status in STATUS_KILLED:
            continue
        diff = run(mutmut + ["show", name], work).stdout
        removed, added = changed_lines(diff)
        rule = next((n for n, (a, b, _, function) in enumerate(equivalent_rules)
                     if a in removed and added in (removed.replace(a, b), removed.replace(a, b, 1))
                     and (not function or f"{function}__mutmut_" in name)), None)
        if rule is not None:
            equivalent.append((name, equivalent_rules[rule][2]))
            used.add(rule)
        else:
            survivors.append((name, status, diff))
    total = len(statuses)
    killed = sum(1 for s in statuses.values() if s in STATUS_KILLED)
    considered = total - len(equivalent)
    score = 100.0 * killed / considered if considered else 100.0
    for name, status, diff in survivors:
        print(f"-- {status}: {name}\n{diff}\n")
    for name, why in equivalent:
        print(f"   equivalent: {name}: {why}")
    for n, (a, b, _, _) in enumerate(equivalent_rules):
        if n not in used:  # keep the list honest: an argument that no survivor needs any more goes
            print(f"   unused equivalence rule (nothing survives as {a!r} -> {b!r}): drop it from EQUIVALENT")
    wall = time.monotonic() - started
    print(f"   {module}: {total} mutants, {killed} killed, {len(equivalent)} equivalent, "
          f"{len(survivors)} survived, score {score:.1f}%, {wall:.0f} s", flush=True)
    return {"module": module, "total": total, "killed": killed, "equivalent": len(equivalent),
            "survived": len(survivors), "score": score, "wall": wall}


def main(argv: list[str]) -> int:
    import os

    jobs = int(os.environ.get("MUTATE_JOBS", "1"))
    targets: list[tuple[str, list[str]]] = []
    for wanted in argv or list(MODULES):
        patterns = MODULES.get(wanted) or next((t for m, t in MODULES.items() if "*" in m and Path(wanted).match(m)), [])
        paths = [p for p in expand([wanted]) if not p.endswith("__init__.py")]
        if not paths:
            print(f"== {wanted}: not in this tree yet, skipped")
        targets += [(path, patterns) for path in paths]
    rows = [measure(module, patterns, jobs) for module, patterns in targets]
    table = ["| module | mutants | killed | equivalent | score | wall time |", "|---|---|---|---|---|---|"]
    table += [f"| `{r['module']}` | {r['total']} | {r['killed']} | {r['equivalent']} | "
              + (f"{r['score']:.1f}%" if r["total"] else "no mutant (declarations only)")
              + f" | {float(r['wall']) / 60:.1f} min |" for r in rows]  # type: ignore[arg-type]
    WORK.mkdir(exist_ok=True)
    (WORK / "scores.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    return 0 if all(float(r["score"]) >= 90.0 for r in rows) else 1  # type: ignore[arg-type]


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
