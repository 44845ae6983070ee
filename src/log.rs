//! What a run tells people on stderr. By default human lines: the resume notice, one warning or
//! error line, the closing summary. With `--log-format json` every event is one JSON object per
//! line (`{"event": ..., "time": ..., ...}`) for log collectors: run start, resume, decode errors
//! with their frame, checkpoints, warnings, errors and the finish.

use std::sync::OnceLock;

/// How events are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

static FORMAT: OnceLock<Format> = OnceLock::new();

/// Chooses the format for the whole process (the first call wins).
pub fn set_format(format: Format) {
    let _ = FORMAT.set(format);
}

fn format() -> Format {
    FORMAT.get().copied().unwrap_or_default()
}

/// Writes one event: in text mode `text` (if any) as a line, in JSON mode an object with the
/// event name, the time, `fields` and `text` as `message`.
pub fn event(name: &str, text: Option<&str>, fields: serde_json::Value) {
    match format() {
        Format::Text => {
            if let Some(text) = text {
                eprintln!("{text}");
            }
        }
        Format::Json => {
            let mut obj = serde_json::Map::new();
            obj.insert("event".into(), name.into());
            obj.insert("time".into(), now_rfc3339().into());
            if let serde_json::Value::Object(f) = fields {
                obj.extend(f);
            }
            if let Some(text) = text {
                obj.insert("message".into(), text.into());
            }
            eprintln!("{}", serde_json::Value::Object(obj));
        }
    }
}

/// Now, as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
