"""An unmodified app under `opentelemetry-instrument`, exporting OTLP/gRPC to a sink this test runs."""

from __future__ import annotations

from instrumented_app import APP_CALLS, run_instrumented_app
from llmtally.demo.fake_provider import CHAT_USAGE
from otlp_sink import OTLPSink, attributes

KEYS = ("sk-demo-openai-key-0123456789", "sk-ant-demo-key-0123456789")


def test_opentelemetry_instrument_exports_spans_metrics_and_audit_events(provider, tmp_path):
    with OTLPSink() as sink:
        run = run_instrumented_app(provider.base_url, tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=sink.endpoint)
    calls = APP_CALLS
    ours = [span for scope, span in sink.spans() if scope == "llmtally"]
    assert len(ours) == calls, run.stderr
    assert not [s for scope, s in sink.spans() if scope.startswith("com.anthropic")]
    events = [r for r in sink.log_records() if r.event_name == "llmtally.completion"]
    assert len(events) == calls
    # Each audit event is linked to its span.
    assert {bytes(e.span_id) for e in events} == {bytes(s.span_id) for s in ours}
    chat = [attributes(e.attributes) for e in events]
    openai_chat = [a for a in chat if a["gen_ai.provider.name"] == "openai" and a["gen_ai.operation.name"] == "chat"]
    assert openai_chat[0]["gen_ai.usage.input_tokens"] == CHAT_USAGE["prompt_tokens"]
    assert openai_chat[0]["user.id"] == "alice"
    total = sum(p.as_int for p in sink.metric_points("completion.requests.total"))
    assert total == calls
    # Provider keys never leave the app, in any signal.
    for key in KEYS:
        assert key.encode() not in sink.raw
    assert b"Authorization" not in sink.raw and b"authorization" not in sink.raw
