"""Attribute, event and instrument names: the GenAI semantic conventions and llmtally's own."""

from __future__ import annotations

from typing import Final

# GenAI semantic conventions (https://opentelemetry.io/docs/specs/semconv/gen-ai/).
OPERATION: Final = "gen_ai.operation.name"
PROVIDER: Final = "gen_ai.provider.name"
REQUEST_MODEL: Final = "gen_ai.request.model"
REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
REQUEST_TOP_P: Final = "gen_ai.request.top_p"
REQUEST_TOP_K: Final = "gen_ai.request.top_k"
REQUEST_FREQUENCY_PENALTY: Final = "gen_ai.request.frequency_penalty"
REQUEST_PRESENCE_PENALTY: Final = "gen_ai.request.presence_penalty"
REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
REQUEST_SEED: Final = "gen_ai.request.seed"
REQUEST_CHOICE_COUNT: Final = "gen_ai.request.choice.count"
REQUEST_STREAM: Final = "gen_ai.request.stream"
REQUEST_SERVICE_TIER: Final = "gen_ai.openai.request.service_tier"
RESPONSE_SERVICE_TIER: Final = "openai.response.service_tier"
REQUEST_ENCODING_FORMATS: Final = "gen_ai.request.encoding_formats"
REQUEST_REASONING_EFFORT: Final = "gen_ai.request.reasoning_effort"  # as OpenLLMetry names it
RESPONSE_ID: Final = "gen_ai.response.id"
RESPONSE_MODEL: Final = "gen_ai.response.model"
RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
USAGE_CACHE_READ_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
USAGE_CACHE_WRITE_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
USAGE_REASONING_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
TOKEN_TYPE: Final = "gen_ai.token.type"
INPUT_MESSAGES: Final = "gen_ai.input.messages"
OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
CONVERSATION_ID: Final = "gen_ai.conversation.id"
ERROR_TYPE: Final = "error.type"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
HTTP_STATUS_CODE: Final = "http.response.status_code"
HTTP_RESEND_COUNT: Final = "http.request.resend_count"
ENVIRONMENT: Final = "deployment.environment.name"
USER_ID: Final = "user.id"

# llmtally's own attributes.
TOTAL_TOKENS: Final = "llmtally.usage.total_tokens"
USAGE_SOURCE: Final = "llmtally.usage.source"  # provider | partial | none
SERVICE_TIER: Final = "llmtally.service_tier"  # the tier the provider reports, else the one asked for (not auto)
SPEED: Final = "llmtally.speed"  # the inference speed the provider reports (Anthropic: standard | fast), else asked for
REQUEST_RESPONSE_FORMAT: Final = "llmtally.request.response_format"  # the asked format's type (json_schema...)
REQUEST_TOOL_COUNT: Final = "llmtally.request.tool_count"  # how many tools the request offers the model
REQUEST_SPEED: Final = "llmtally.request.speed"  # the speed the request asked for (Anthropic's `speed`)
USAGE_CACHE_WRITE_1H_TOKENS: Final = "llmtally.usage.cache_creation.1h.input_tokens"  # of the cache writes, 1-hour
USAGE_INPUT_AUDIO_TOKENS: Final = "llmtally.usage.audio.input_tokens"  # of the input tokens, audio
USAGE_OUTPUT_AUDIO_TOKENS: Final = "llmtally.usage.audio.output_tokens"  # of the output tokens, audio
USAGE_WEB_SEARCHES: Final = "llmtally.usage.web_searches"  # billed server-side web searches (Anthropic)
# + a genai-prices usage key (input_image_tokens, input_characters, audio_seconds, rerank_searches...) or `images`:
# other billed units a provider reports.
USAGE_UNIT_PREFIX: Final = "llmtally.usage.unit."
API_KEY: Final = "llmtally.api_key"  # an alias, or "sha256:<12 hex>" of the provider key
FEATURE: Final = "llmtally.feature"
DEPARTMENT: Final = "llmtally.department"
ERROR_MESSAGE: Final = "llmtally.error.message"
DURATION: Final = "llmtally.duration"  # seconds
STREAM_OUTCOME: Final = "llmtally.stream.outcome"  # completed | closed_early | failed | abandoned
EVENTS: Final = "llmtally.events"  # JSON list of the call's events (retries)
RATELIMIT_PREFIX: Final = "llmtally.ratelimit."  # + "<kind>.limit" / "<kind>.remaining" / "<kind>.reset"
RATELIMIT_KIND: Final = "llmtally.ratelimit.kind"
REQUEST_ID: Final = "llmtally.provider.request_id"

# Metric attributes of llmtally's own instruments that the semconv histograms do not carry.
METRIC_ONLY_KEYS: Final = (FEATURE, DEPARTMENT, ENVIRONMENT)

# Operation names: the semconv's (chat, text_completion, generate_content, embeddings) and llmtally's own for the
# operations the semconv does not name yet.
OP_RERANK: Final = "rerank"
OP_IMAGE_GENERATION: Final = "image_generation"
OP_IMAGE_EDIT: Final = "image_edit"
OP_TEXT_TO_SPEECH: Final = "text_to_speech"
OP_TRANSCRIPTION: Final = "transcription"
OP_TRANSLATION: Final = "translation"

AUDIT_EVENT_NAME: Final = "llmtally.completion"
RETRY_EVENT_NAME: Final = "llmtally.retry"
INSTRUMENTATION_SCOPE: Final = "llmtally"

# Bucket boundaries advised by the GenAI metrics conventions.
DURATION_BUCKETS: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS: Final = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
TTFT_BUCKETS: Final = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
