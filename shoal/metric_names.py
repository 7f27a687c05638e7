"""Prometheus metric names shared by the runtime, the router, dashboards and alerts.

They are vLLM's names (vllm/v1/metrics) under our own `shoal:` prefix, so dashboards and autoscalers
written for vLLM carry over by changing the prefix. Units are base units (seconds); counters end in
`_total`.
"""

PREFIX = "shoal:"

# Labels every runtime series carries. `model_name` is vLLM's label for the served model.
LABEL_MODEL = "model_name"
LABEL_POOL = "pool"
LABEL_REVISION = "revision"
RUNTIME_LABELS = (LABEL_MODEL, LABEL_POOL, LABEL_REVISION)

# Scheduler state (gauges).
NUM_REQUESTS_RUNNING = PREFIX + "num_requests_running"
NUM_REQUESTS_WAITING = PREFIX + "num_requests_waiting"

# KV cache (gauges, and the preemptions counter).
KV_CACHE_USAGE_PERC = PREFIX + "kv_cache_usage_perc"
KV_CACHE_FREE_BLOCKS = PREFIX + "kv_cache_free_blocks"
KV_CACHE_TOTAL_BLOCKS = PREFIX + "kv_cache_total_blocks"
NUM_PREEMPTIONS = PREFIX + "num_preemptions"  # counter; exposed with the _total suffix

# Prefix cache, counted in tokens as vLLM does (counters; exposed with the _total suffix).
PREFIX_CACHE_QUERIES = PREFIX + "prefix_cache_queries"
PREFIX_CACHE_HITS = PREFIX + "prefix_cache_hits"

# Tokens (counters; exposed with the _total suffix).
PROMPT_TOKENS = PREFIX + "prompt_tokens"
GENERATION_TOKENS = PREFIX + "generation_tokens"

# Request latencies (histograms, seconds).
TIME_TO_FIRST_TOKEN = PREFIX + "time_to_first_token_seconds"
INTER_TOKEN_LATENCY = PREFIX + "inter_token_latency_seconds"
E2E_REQUEST_LATENCY = PREFIX + "e2e_request_latency_seconds"

# Request sizes (histograms, tokens).
REQUEST_PROMPT_TOKENS = PREFIX + "request_prompt_tokens"
REQUEST_GENERATION_TOKENS = PREFIX + "request_generation_tokens"

# Engine steps: tokens per step (a histogram, under vLLM's name) and step wall time.
ITERATION_TOKENS = PREFIX + "iteration_tokens_total"
ENGINE_STEP_DURATION = PREFIX + "engine_step_duration_seconds"

# Request outcomes (counters; exposed with the _total suffix).
# Finished requests by reason: stop, length (vLLM's request_success with finished_reason).
REQUEST_SUCCESS = PREFIX + "request_success"
LABEL_FINISHED_REASON = "finished_reason"
# Requests cut short: the client cancelled, or the server aborted them while draining. Not a success,
# and kept out of the latency and request-size histograms, whose requests ran to their end.
REQUEST_ABORTS = PREFIX + "request_aborts"
# Requests refused or failed, by gRPC status code name (INVALID_ARGUMENT, RESOURCE_EXHAUSTED, ...).
REQUEST_ERRORS = PREFIX + "request_errors"
LABEL_CODE = "code"
OOM_ERRORS = PREFIX + "oom_errors"  # requests failed because their engine step ran out of GPU memory

# Constrained decoding (structured outputs): requests by kind (counter), grammar compile time and the
# time a step's allowed-token masks take to fill (histograms, seconds).
STRUCTURED_OUTPUT_REQUESTS = PREFIX + "structured_output_requests"
LABEL_KIND = "kind"  # json_schema, json_object, regex, grammar
GRAMMAR_COMPILE_DURATION = PREFIX + "grammar_compile_seconds"
GRAMMAR_MASK_DURATION = PREFIX + "grammar_mask_seconds"
# Speculative decoding, vLLM's spec_decode_* counters: rows verified (drafts), draft tokens proposed,
# draft tokens accepted, and accepted tokens by their position among the drafts (label position, from
# 0). Acceptance rate = accepted / draft tokens; mean accepted length = 1 + accepted / drafts.
SPEC_DECODE_NUM_DRAFTS = PREFIX + "spec_decode_num_drafts"
SPEC_DECODE_NUM_DRAFT_TOKENS = PREFIX + "spec_decode_num_draft_tokens"
SPEC_DECODE_NUM_ACCEPTED_TOKENS = PREFIX + "spec_decode_num_accepted_tokens"
SPEC_DECODE_NUM_ACCEPTED_TOKENS_PER_POS = PREFIX + "spec_decode_num_accepted_tokens_per_pos"
LABEL_POSITION = "position"
# The lifecycle (RuntimeAdmin): whether the engine is paused (gauge, 1 or 0), the weights it serves
# (an info gauge: 1, labelled weights_version), weight updates (counter) and how long each took.
ENGINE_PAUSED = PREFIX + "engine_paused"
WEIGHTS_INFO = PREFIX + "weights_info"
LABEL_WEIGHTS_VERSION = "weights_version"
WEIGHT_UPDATES = PREFIX + "weight_updates"
WEIGHT_UPDATE_DURATION = PREFIX + "weight_update_seconds"
# How long the runtime took to start, by phase: import, model_load, kv_cache, cuda_graphs, warmup and
# total, process start to serving (a gauge, seconds; runtime/startup.py names the phases).
STARTUP_PHASE_SECONDS = PREFIX + "startup_phase_seconds"
LABEL_PHASE = "phase"
# prometheus_client's process collector: when the runtime started (Unix time). The router counts a
# runtime's counters from there when it started later than the router did.
PROCESS_START_TIME = "process_start_time_seconds"

# --- The router (shoal.router) ---
# Its own series carry pool, revision, qos_class and tenant (all bounded: from config and endpoints).
ROUTER_PREFIX = PREFIX + "router_"
LABEL_QOS_CLASS = "qos_class"
LABEL_TENANT = "tenant"
LABEL_STATUS = "status"  # the HTTP status the client got (gRPC clients: its HTTP equivalent)
LABEL_REASON = "reason"
LABEL_LIMIT = "limit"  # requests (concurrency) or tokens
LABEL_RULE = "rule"
LABEL_METRIC = "metric"  # ttft, itl, e2e
LABEL_QUANTILE = "quantile"
LABEL_DECISION = "decision"  # allowed, off_by_client, off_by_qos, off_by_tenant, off_by_load

# Requests and tokens (counters; exposed with the _total suffix).
ROUTER_REQUESTS = ROUTER_PREFIX + "requests"
ROUTER_PROMPT_TOKENS = ROUTER_PREFIX + "prompt_tokens"
ROUTER_GENERATION_TOKENS = ROUTER_PREFIX + "generation_tokens"
ROUTER_UPSTREAM_ERRORS = ROUTER_PREFIX + "upstream_errors"  # by gRPC code
ROUTER_SHED = ROUTER_PREFIX + "shed"  # refused by QoS admission, by reason
ROUTER_RATE_LIMITED = ROUTER_PREFIX + "rate_limited"  # refused by a tenant limit
ROUTER_ROLLBACKS = ROUTER_PREFIX + "rollbacks"  # canaries pulled out, by the first rule broken
# Requests sent to a runtime, by whether they may speculate and, if not, the first reason why.
ROUTER_SPECULATION_DECISIONS = ROUTER_PREFIX + "speculation_decisions"
# Requests held while their pool had no ready runtime that waited out its cold_start.max_wait_s (503).
ROUTER_HOLD_TIMEOUTS = ROUTER_PREFIX + "hold_timeouts"

# Latencies as clients see them (histograms, seconds).
ROUTER_TIME_TO_FIRST_TOKEN = ROUTER_PREFIX + "time_to_first_token_seconds"
ROUTER_INTER_TOKEN_LATENCY = ROUTER_PREFIX + "inter_token_latency_seconds"
ROUTER_E2E_REQUEST_LATENCY = ROUTER_PREFIX + "e2e_request_latency_seconds"
ROUTER_QUEUE_TIME = ROUTER_PREFIX + "queue_time_seconds"

# Live state (gauges).
ROUTER_REQUESTS_RUNNING = ROUTER_PREFIX + "num_requests_running"
ROUTER_REQUESTS_WAITING = ROUTER_PREFIX + "num_requests_waiting"
ROUTER_HELD_REQUESTS = ROUTER_PREFIX + "held_requests"  # waiting for the pool's first ready runtime
ROUTER_BATCH_CONCURRENCY_LIMIT = ROUTER_PREFIX + "batch_concurrency_limit"
ROUTER_REVISION_WEIGHT = ROUTER_PREFIX + "revision_weight_percent"
ROUTER_REVISION_ROLLED_BACK = ROUTER_PREFIX + "revision_rolled_back"
ROUTER_BACKENDS_READY = ROUTER_PREFIX + "backends_ready"
ROUTER_BACKENDS_METRICS_FAILING = ROUTER_PREFIX + "backends_metrics_failing"  # endpoints whose /metrics fail
ROUTER_REALTIME_SESSIONS = ROUTER_PREFIX + "realtime_sessions"

# The rolling windows the rollback rules read (gauges, recomputed at every scrape).
ROUTER_WINDOW_LATENCY = ROUTER_PREFIX + "window_latency_seconds"
ROUTER_WINDOW_ERROR_RATIO = ROUTER_PREFIX + "window_error_ratio"
ROUTER_WINDOW_TOKENS_PER_SECOND = ROUTER_PREFIX + "window_generation_tokens_per_second"
ROUTER_WINDOW_KV_FREE = ROUTER_PREFIX + "window_kv_cache_free_perc"  # the revision's fullest runtime
ROUTER_WINDOW_PREEMPTIONS = ROUTER_PREFIX + "window_preemptions"
ROUTER_WINDOW_OOM_ERRORS = ROUTER_PREFIX + "window_oom_errors"

# --- The operator (shoal.operator) ---
# One series per ModelPool, labelled pool (<namespace>.<name>, as on runtime and router series).
OPERATOR_PREFIX = PREFIX + "operator_"
OPERATOR_REPLICAS_DESIRED = OPERATOR_PREFIX + "pool_replicas_desired"  # spec.replicas (+ the canary's)
OPERATOR_REPLICAS_READY = OPERATOR_PREFIX + "pool_replicas_ready"  # ready runtime pods, all revisions
OPERATOR_POOL_CONDITION = OPERATOR_PREFIX + "pool_condition"  # 1 where status.conditions[type] is True, by condition
LABEL_CONDITION = "condition"  # Ready, Progressing, Degraded, RolledBack
OPERATOR_ROLLOUT_ACTIVE = OPERATOR_PREFIX + "rollout_active"  # 1 while a canary is rolled out
OPERATOR_ROLLOUT_CANARY_WEIGHT = OPERATOR_PREFIX + "rollout_canary_weight_percent"
# When the rollout last moved (started, a step began, promotion began): stuck ones stop moving.
OPERATOR_ROLLOUT_LAST_PROGRESS = OPERATOR_PREFIX + "rollout_last_progress_timestamp_seconds"
OPERATOR_ROLLOUTS = OPERATOR_PREFIX + "rollouts"  # counter by outcome: promoted, rolled_back; _total suffix
LABEL_OUTCOME = "outcome"
# The autoscaler (spec.autoscaling): the replicas it wants (against OPERATOR_REPLICAS_READY), each
# signal's value and target as it read them (label signal: waitingPerReplica, kvCacheUsage, ttftP95),
# and the replica changes it made (a counter by direction: up, down; _total suffix).
OPERATOR_AUTOSCALER_DESIRED = OPERATOR_PREFIX + "autoscaler_desired_replicas"
OPERATOR_AUTOSCALER_SIGNAL_VALUE = OPERATOR_PREFIX + "autoscaler_signal_value"
OPERATOR_AUTOSCALER_SIGNAL_TARGET = OPERATOR_PREFIX + "autoscaler_signal_target"
OPERATOR_AUTOSCALER_SCALE_EVENTS = OPERATOR_PREFIX + "autoscaler_scale_events"
LABEL_SIGNAL = "signal"
LABEL_DIRECTION = "direction"
