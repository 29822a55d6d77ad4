//! The JSON log line format: one object per line, with the fields of every enclosing span (such as `request_id`) flattened into it.
//!
//! `tracing-subscriber`'s own JSON format nests span fields under `span` and
//! `spans`, so a line logged deep inside an exchange would not carry
//! `request_id` where log queries look for it. [`FlatJson`] writes
//!
//! ```json
//! {"timestamp":"2026-01-02T03:04:05.678Z","level":"INFO","target":"tokenmint::exchange",
//!  "span":"exchange","request_id":"…","broker":"deploy","message":"exchange refused", …}
//! ```
//!
//! Fields are merged from the outermost span inwards, then the event's own
//! fields, so the innermost value wins on a name clash. Use it with
//! [`tracing_subscriber::fmt::format::JsonFields`] as the field formatter
//! (so span fields are stored as JSON); see `tokenmint --log-format json`.

use serde_json::{Map, Value};
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime as _, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The flattened JSON event format; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        line.insert("timestamp".into(), Value::String(timestamp));
        let meta = event.metadata();
        line.insert("level".into(), Value::String(meta.level().to_string()));
        line.insert("target".into(), Value::String(meta.target().to_owned()));
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                line.insert("span".into(), Value::String(span.name().to_owned()));
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                match serde_json::from_str::<Map<String, Value>>(fields) {
                    Ok(fields) => line.extend(fields),
                    Err(_) if fields.is_empty() => {}
                    // Not JSON-formatted fields: keep them, as text.
                    Err(_) => {
                        line.insert(
                            format!("{}.fields", span.name()),
                            Value::String(fields.to_string()),
                        );
                    }
                }
            }
        }
        event.record(&mut FieldVisitor(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Records an event's fields as JSON values.
struct FieldVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for FieldVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::String(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(emit: impl FnOnce()) -> Vec<Value> {
        let capture = Capture::default();
        let sink = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(FlatJson)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = capture.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn span_fields_are_flattened_into_every_line() {
        let out = lines(|| {
            tracing::info!("outside any request");
            let request = tracing::info_span!("request", request_id = "r-1", method = "POST");
            let _r = request.enter();
            tracing::info!(code = "access_denied", status = 403_u16, "refused");
            let exchange = tracing::info_span!("exchange", broker = "deploy");
            let _e = exchange.enter();
            tracing::debug!(ok = true, error = %"boom", "inner");
        });
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(out[0].get("request_id").is_none());
        assert_eq!(out[0]["message"], "outside any request");
        assert_eq!(out[0]["level"], "INFO");
        assert!(out[0]["timestamp"].as_str().is_some_and(|t| t.len() > 10));

        assert_eq!(out[1]["request_id"], "r-1");
        assert_eq!(out[1]["method"], "POST");
        assert_eq!(out[1]["span"], "request");
        assert_eq!(out[1]["code"], "access_denied");
        assert_eq!(out[1]["status"], 403);
        assert_eq!(out[1]["message"], "refused");

        // Fields of every enclosing span, outermost first.
        assert_eq!(out[2]["request_id"], "r-1");
        assert_eq!(out[2]["broker"], "deploy");
        assert_eq!(out[2]["span"], "exchange");
        assert_eq!(out[2]["ok"], true);
        assert_eq!(out[2]["error"], "boom");
        assert_eq!(out[2]["target"], module_path!());
    }

    #[test]
    fn inner_values_win_and_lines_stay_single_json_objects() {
        let out = lines(|| {
            let outer = tracing::info_span!("outer", who = "outer");
            let _o = outer.enter();
            let inner = tracing::info_span!("inner", who = "inner");
            let _i = inner.enter();
            tracing::info!(text = "two\nlines \"quoted\"", "x");
            tracing::info!(who = "event", "y");
        });
        assert_eq!(out.len(), 2);
        assert_eq!(out[0]["who"], "inner");
        assert_eq!(out[0]["text"], "two\nlines \"quoted\"");
        assert_eq!(out[1]["who"], "event");
    }
}
