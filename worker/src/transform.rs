//! What each input record becomes: `Passthrough`, or a jq filter compiled once per worker.
//!
//! # Passthrough
//!
//! The output record has the input's key, value and headers; the topic comes from the routing.
//!
//! # jq
//!
//! The filter runs once per input record (jq as implemented by [jaq](https://github.com/01mf02/jaq)).
//!
//! - Its input `.` is the record's value parsed as JSON. A record without a value (a tombstone)
//!   gives `null`. A value that is not JSON is a record error.
//! - Variables: `$key` (the key as a string, invalid UTF-8 replaced by U+FFFD, or `null`),
//!   `$headers` (an object of header name to value as a string, or `null` for a header without a
//!   value; a repeated header name keeps its last value), `$topic`, `$partition`, `$offset`, and
//!   `$timestamp` (milliseconds since the epoch, or `null`).
//! - Each value the filter emits is one output record: emitting nothing (`select(...)`, `empty`)
//!   drops the record, emitting several (`.items[]`) produces several, in order. More than
//!   10 000 outputs for one record is a record error.
//! - With `output: Value` each emitted value is serialized as JSON and becomes the new value; the
//!   key and the headers are kept.
//! - With `output: Record` each emitted value must be an object
//!   `{"value": any, "key"?: string|null, "topic"?: string, "headers"?: {name: string|null}}`.
//!   `value` absent or `null` produces a record without a value (a tombstone); `key` absent keeps
//!   the input's key, `null` removes it; `topic` is the resource name of one of the Pipeline's
//!   output topics (absent: routing decides); `headers` absent keeps the input's headers, an
//!   object replaces them. Any other field is an error.
//! - A byte string (made with `tobytes`) is written as its raw bytes wherever a value, key or
//!   header is expected; elsewhere it is an error. `NaN` and infinities are not JSON and are an
//!   error too.
//! - A value that is not JSON, a runtime error (`error("...")`, `.a` on a number, ...) or a
//!   malformed `Record` output is a *record error*: the Pipeline's `errorPolicy` decides (dead
//!   letter, or stop at that record).
//!
//! ## Deterministic and free of side effects
//!
//! A transaction that aborts is replayed from its first record, and the replay must produce the
//! same outputs, or "exactly once" would mean "once, but different". Effects outside Kafka are not
//! rolled back with the transaction either. So the filters that read the clock (`now`), the
//! environment (`env`, `$ENV`), other inputs (`input`, `inputs`, `input_filename`), the worker's
//! time zone (`localtime`, `strflocaltime`), write to the log (`debug`, `stderr`) or stop the
//! process (`halt`, `halt_error`) are not available: a filter that uses them is refused when it
//! is compiled, with a message naming the filter. Modules (`import`, `include`) are refused too:
//! a transform is one self-contained program. Everything else of jq's standard library is there
//! (`map`, `select`, `test`, `sub`, `todate`, `strftime` in UTC, `@base64`, `tojson`, ...).
//!
//! The filter is not sandboxed against exhausting resources: a filter that recurses without end
//! overflows the stack and a loop that never emits never returns. Keep transforms simple.

use std::fmt;

use jaq_core::load::{self, Arena, File, Loader};
use jaq_core::{Ctx, Vars, compile, data};
use jaq_json::{Num, Val};

use crate::config::{JqOutput, TransformSpec};

/// A Kafka header: name and optional value.
pub type Header = (String, Option<Vec<u8>>);

/// One consumed record, as the transform sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputRecord {
    /// Kafka topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Record timestamp, milliseconds since the epoch.
    pub timestamp: Option<i64>,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers, in order.
    pub headers: Vec<Header>,
}

/// One record to produce.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputRecord {
    /// Resource name of the output topic the transform chose; `None` lets routing decide.
    pub topic: Option<String>,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers, in order.
    pub headers: Vec<Header>,
}

/// A jq filter that does not compile; the message names the problem and where it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CompileError {
    /// Human-readable: what is wrong, and at which line and column of the filter.
    pub message: String,
}

/// A record the transform or the routing cannot handle; the error policy decides what happens.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RecordError {
    /// Human-readable reason, at most [`MAX_ERROR_LEN`] bytes.
    pub message: String,
}

/// Longest [`RecordError`] message: it travels in a dead-letter header and a log line, and jq's
/// error messages can quote a whole value.
pub const MAX_ERROR_LEN: usize = 1024;

/// Most records one input record may become; more is a record error rather than an unbounded
/// transaction.
pub const MAX_OUTPUTS_PER_RECORD: usize = 10_000;

impl RecordError {
    /// A record error with `message`, cut to [`MAX_ERROR_LEN`] bytes on a character boundary.
    pub fn new(message: impl Into<String>) -> RecordError {
        let mut message = message.into();
        if message.len() > MAX_ERROR_LEN {
            let mut end = MAX_ERROR_LEN - 3;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str("...");
        }
        RecordError { message }
    }
}

/// jaq's data kind: JSON values, no global data beyond the lookup table (so no `input`).
type Data = data::JustLut<Val>;

/// A compiled transform. Compile once, apply to every record; it is `Send + Sync`, so share
/// it by reference or in an `Arc`.
pub struct Transform(Kind);

enum Kind {
    Passthrough,
    Jq {
        filter: jaq_core::Filter<Data>,
        output: JqOutput,
    },
}

impl fmt::Debug for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Passthrough => f.write_str("Transform::Passthrough"),
            Kind::Jq { output, .. } => write!(f, "Transform::Jq({output:?})"),
        }
    }
}

/// The variables every filter sees, in the order [`Transform::apply`] binds them.
const GLOBAL_VARS: [&str; 6] = [
    "$key",
    "$headers",
    "$topic",
    "$partition",
    "$offset",
    "$timestamp",
];

/// Filters and variables a transform may not use, with the reason shown to the user.
const FORBIDDEN: &[(&str, &str)] = &[
    ("now", "it reads the clock"),
    ("env", "it reads the worker's environment"),
    ("$ENV", "it reads the worker's environment"),
    (
        "input",
        "it reads records other than the one being transformed",
    ),
    (
        "inputs",
        "it reads records other than the one being transformed",
    ),
    ("input_filename", "it reads the worker's files"),
    ("localtime", "it depends on the worker's time zone"),
    ("strflocaltime", "it depends on the worker's time zone"),
    ("debug", "it writes to the worker's log"),
    ("debug_empty", "it writes to the worker's log"),
    ("stderr", "it writes to the worker's log"),
    ("stderr_empty", "it writes to the worker's log"),
    ("halt", "it stops the worker"),
    ("halt_error", "it stops the worker"),
];

fn forbidden_reason(name: &str) -> Option<&'static str> {
    FORBIDDEN
        .iter()
        .find(|(forbidden, _)| *forbidden == name)
        .map(|(_, reason)| *reason)
}

impl Transform {
    /// Compiles a transform. A jq filter is parsed and compiled here, once; errors name the
    /// position and the problem.
    pub fn compile(spec: &TransformSpec) -> Result<Transform, CompileError> {
        match spec {
            TransformSpec::Passthrough => Ok(Transform(Kind::Passthrough)),
            TransformSpec::Jq { filter, output } => Ok(Transform(Kind::Jq {
                filter: compile_jq(filter)?,
                output: *output,
            })),
        }
    }

    /// Applies the transform to one record: zero, one or several output records.
    pub fn apply(&self, record: &InputRecord) -> Result<Vec<OutputRecord>, RecordError> {
        match &self.0 {
            Kind::Passthrough => Ok(vec![OutputRecord {
                topic: None,
                key: record.key.clone(),
                value: record.value.clone(),
                headers: record.headers.clone(),
            }]),
            Kind::Jq { filter, output } => run_jq(filter, *output, record),
        }
    }
}

fn compile_jq(code: &str) -> Result<jaq_core::Filter<Data>, CompileError> {
    refuse_modules(code)?;
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs())
        .filter(|def| forbidden_reason(def.name).is_none());
    let funs = jaq_core::funs::<Data>()
        .chain(jaq_std::funs::<Data>())
        .chain(jaq_json::funs::<Data>())
        .filter(|(name, _, _)| forbidden_reason(name).is_none());
    let arena = Arena::default();
    let modules = Loader::new(defs)
        .load(&arena, File { code, path: () })
        .map_err(|errors| load_error(code, errors))?;
    compile::Compiler::default()
        .with_funs(funs)
        .with_global_vars(GLOBAL_VARS)
        .compile(modules)
        .map_err(|errors| undefined_error(code, errors))
}

/// jaq hands data imports (`import "x" as $x;`) to the runtime, which has no value for them, so
/// modules are refused before jaq sees them. They can only open a program.
fn refuse_modules(code: &str) -> Result<(), CompileError> {
    let Ok(tokens) = load::lex::Lexer::new(code).lex() else {
        // The loader reports lexing errors with their position.
        return Ok(());
    };
    let first = tokens.first();
    if let Some(load::lex::Token(word, load::lex::Tok::Word)) = first
        && matches!(*word, "import" | "include" | "module")
    {
        return Err(CompileError {
            message: format!(
                "`{word}` is not supported in Pipeline transforms: a transform is one \
                 self-contained jq program{}",
                at(code, word)
            ),
        });
    }
    Ok(())
}

fn load_error(code: &str, errors: load::Errors<&str, ()>) -> CompileError {
    let mut messages = Vec::new();
    for (_file, error) in errors {
        match error {
            load::Error::Io(errors) => {
                for (path, why) in errors {
                    messages.push(format!("cannot load module {path}: {why}"));
                }
            }
            load::Error::Lex(errors) => {
                for (expected, found) in errors {
                    let expected = match expected {
                        // `as_str` panics on delimiters it does not know; the lexer only makes
                        // these four, but a panic here would take the operator down.
                        load::lex::Expect::Delim(d) => match d {
                            "(" => "closing parenthesis",
                            "[" => "closing bracket",
                            "{" => "closing brace",
                            "\"" => "closing quote",
                            _ => "closing delimiter",
                        },
                        other => other.as_str(),
                    };
                    messages.push(format!(
                        "syntax error: expected {expected}{}",
                        at(code, found)
                    ));
                }
            }
            load::Error::Parse(errors) => {
                for (expected, found) in errors {
                    let quoted = if found.is_empty() {
                        "the end of the filter".to_string()
                    } else {
                        format!("`{}`", first_line(found))
                    };
                    messages.push(format!(
                        "syntax error: expected {} but found {quoted}{}",
                        expected.as_str(),
                        at(code, found)
                    ));
                }
            }
        }
    }
    CompileError {
        message: messages.join("; "),
    }
}

fn undefined_error(code: &str, errors: compile::Errors<&str, ()>) -> CompileError {
    let mut messages = Vec::new();
    for (_file, errors) in errors {
        for (name, undefined) in errors {
            let position = at(code, name);
            messages.push(match (forbidden_reason(name), &undefined) {
                (Some(reason), _) => format!(
                    "`{name}`{position} is not available in Pipeline transforms: {reason}, and a \
                     transform must give the same output when a record is replayed after an \
                     aborted transaction"
                ),
                (None, compile::Undefined::Filter(arity)) => {
                    format!("undefined filter `{name}/{arity}`{position}")
                }
                (None, other) => format!("undefined {} `{name}`{position}", other.as_str()),
            });
        }
    }
    CompileError {
        message: messages.join("; "),
    }
}

/// ` at line L, column C` when `part` is a slice of `code` (errors from the standard library's
/// own definitions are not).
fn at(code: &str, part: &str) -> String {
    let base = code.as_ptr() as usize;
    let start = part.as_ptr() as usize;
    if start < base || start > base + code.len() {
        return String::new();
    }
    let offset = start - base;
    let before = &code[..offset.min(code.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!(" at line {line}, column {column}")
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

fn run_jq(
    filter: &jaq_core::Filter<Data>,
    output: JqOutput,
    record: &InputRecord,
) -> Result<Vec<OutputRecord>, RecordError> {
    let input = match &record.value {
        None => Val::Null,
        Some(bytes) => jaq_json::read::parse_single(bytes)
            .map_err(|e| RecordError::new(format!("the value is not JSON: {e}")))?,
    };
    let ctx = Ctx::<Data>::new(&filter.lut, Vars::new(variables(record)));
    let mut outputs = Vec::new();
    for result in filter.id.run((ctx, input)) {
        if outputs.len() == MAX_OUTPUTS_PER_RECORD {
            return Err(RecordError::new(format!(
                "the jq filter emitted more than {MAX_OUTPUTS_PER_RECORD} records for one input"
            )));
        }
        let value = result.map_err(|exception| match exception.get_err() {
            // `error("text")` reads best as the text itself, as jq prints it.
            Ok(error) => match error.into_val() {
                Val::TStr(text) => RecordError::new(format!(
                    "the jq filter failed: {}",
                    String::from_utf8_lossy(&text)
                )),
                other => RecordError::new(format!("the jq filter failed: {other}")),
            },
            // `halt` is refused at compile time; this covers jaq's other control flow, which
            // should never escape the main filter.
            Err(_) => RecordError::new("the jq filter stopped without a value"),
        })?;
        outputs.push(match output {
            JqOutput::Value => OutputRecord {
                topic: None,
                key: record.key.clone(),
                value: Some(value_bytes(&value, "the output")?),
                headers: record.headers.clone(),
            },
            JqOutput::Record => record_from_object(value, record)?,
        });
    }
    Ok(outputs)
}

/// The variables of [`GLOBAL_VARS`], in that order.
fn variables(record: &InputRecord) -> [Val; 6] {
    let text = |bytes: &[u8]| Val::from(String::from_utf8_lossy(bytes).into_owned());
    let key = record.key.as_deref().map_or(Val::Null, text);
    let headers = Val::obj(
        record
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    Val::from(name.clone()),
                    value.as_deref().map_or(Val::Null, text),
                )
            })
            .collect(),
    );
    [
        key,
        headers,
        Val::from(record.topic.clone()),
        Val::from(record.partition as isize),
        integer(record.offset),
        record.timestamp.map_or(Val::Null, integer),
    ]
}

fn integer(i: i64) -> Val {
    isize::try_from(i).map_or_else(|_| Val::from(i as f64), Val::from)
}

/// The bytes of an output value: a byte string as it is, anything else as JSON.
fn value_bytes(value: &Val, what: &str) -> Result<Vec<u8>, RecordError> {
    if let Val::BStr(bytes) = value {
        return Ok(bytes.to_vec());
    }
    let mut out = Vec::new();
    write_json(value, &mut out).map_err(|why| RecordError::new(format!("{what} {why}")))?;
    Ok(out)
}

/// Strict JSON: jaq's own printer writes NaN, byte strings and non-string keys as they are, which
/// downstream JSON readers would choke on.
fn write_json(value: &Val, out: &mut Vec<u8>) -> Result<(), String> {
    match value {
        Val::Null => out.extend_from_slice(b"null"),
        Val::Bool(true) => out.extend_from_slice(b"true"),
        Val::Bool(false) => out.extend_from_slice(b"false"),
        Val::Num(Num::Float(f)) if !f.is_finite() => {
            return Err(format!("contains {value}, which is not a JSON number"));
        }
        Val::Num(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Val::TStr(bytes) => write_json_string(&String::from_utf8_lossy(bytes), out),
        Val::BStr(_) => {
            return Err("contains a byte string, which has no JSON form".to_string());
        }
        Val::Arr(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(item, out)?;
            }
            out.push(b']');
        }
        Val::Obj(fields) => {
            out.push(b'{');
            for (i, (name, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let Val::TStr(name) = name else {
                    return Err(format!("has the object key {name}, which is not a string"));
                };
                write_json_string(&String::from_utf8_lossy(name), out);
                out.push(b':');
                write_json(item, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_json_string(s: &str, out: &mut Vec<u8>) {
    // serde_json escapes exactly as JSON requires; writing a &str into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

fn record_from_object(value: Val, input: &InputRecord) -> Result<OutputRecord, RecordError> {
    let Val::Obj(fields) = value else {
        return Err(RecordError::new(format!(
            "with output Record, the filter must emit objects like {{\"value\": ...}}, not {}",
            short(&value)
        )));
    };
    let mut record = OutputRecord {
        topic: None,
        key: input.key.clone(),
        value: None,
        headers: input.headers.clone(),
    };
    for (name, field) in fields.iter() {
        let name = match name {
            Val::TStr(name) => String::from_utf8_lossy(name).into_owned(),
            other => {
                return Err(RecordError::new(format!(
                    "the output record has the key {}, which is not a string",
                    short(other)
                )));
            }
        };
        match name.as_str() {
            "value" => {
                record.value = match field {
                    Val::Null => None,
                    value => Some(value_bytes(value, "the output value")?),
                }
            }
            "key" => record.key = optional_bytes(field, "key")?,
            "topic" => {
                record.topic = match field {
                    Val::Null => None,
                    Val::TStr(topic) => Some(String::from_utf8_lossy(topic).into_owned()),
                    other => {
                        return Err(RecordError::new(format!(
                            "the output topic must be a string (a Topic resource name), not {}",
                            short(other)
                        )));
                    }
                }
            }
            "headers" => record.headers = headers(field)?,
            other => {
                return Err(RecordError::new(format!(
                    "the output record has the unknown field `{other}` (expected value, key, \
                     topic, headers)"
                )));
            }
        }
    }
    Ok(record)
}

fn optional_bytes(value: &Val, what: &str) -> Result<Option<Vec<u8>>, RecordError> {
    match value {
        Val::Null => Ok(None),
        Val::TStr(bytes) | Val::BStr(bytes) => Ok(Some(bytes.to_vec())),
        other => Err(RecordError::new(format!(
            "the output {what} must be a string or null, not {}",
            short(other)
        ))),
    }
}

fn headers(value: &Val) -> Result<Vec<Header>, RecordError> {
    let Val::Obj(fields) = value else {
        return Err(RecordError::new(format!(
            "the output headers must be an object of strings, not {}",
            short(value)
        )));
    };
    fields
        .iter()
        .map(|(name, value)| {
            let Val::TStr(name) = name else {
                return Err(RecordError::new(format!(
                    "the output header name {} is not a string",
                    short(name)
                )));
            };
            let name = String::from_utf8_lossy(name).into_owned();
            let value = optional_bytes(value, &format!("header {name}"))?;
            Ok((name, value))
        })
        .collect()
}

/// A value for a message: its JSON text, cut short.
fn short(value: &Val) -> String {
    let text = value.to_string();
    if text.len() <= 80 {
        return text;
    }
    let mut end = 77;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jq(filter: &str, output: JqOutput) -> Transform {
        match Transform::compile(&TransformSpec::Jq {
            filter: filter.into(),
            output,
        }) {
            Ok(t) => t,
            Err(e) => panic!("{filter} does not compile: {e}"),
        }
    }

    fn compile_error(filter: &str) -> String {
        match Transform::compile(&TransformSpec::Jq {
            filter: filter.into(),
            output: JqOutput::Value,
        }) {
            Ok(_) => panic!("{filter} compiled"),
            Err(e) => e.message,
        }
    }

    fn record(value: &str) -> InputRecord {
        InputRecord {
            topic: "orders".into(),
            partition: 3,
            offset: 42,
            timestamp: Some(1_700_000_000_000),
            key: Some(b"order-1".to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![
                ("source".into(), Some(b"web".to_vec())),
                ("empty".into(), None),
            ],
        }
    }

    fn values(outputs: &[OutputRecord]) -> Vec<String> {
        outputs
            .iter()
            .map(|o| String::from_utf8_lossy(o.value.as_deref().unwrap_or(b"<none>")).into_owned())
            .collect()
    }

    fn apply(t: &Transform, r: &InputRecord) -> Vec<OutputRecord> {
        match t.apply(r) {
            Ok(out) => out,
            Err(e) => panic!("apply failed: {e}"),
        }
    }

    fn apply_error(t: &Transform, r: &InputRecord) -> String {
        match t.apply(r) {
            Ok(out) => panic!("apply succeeded: {out:?}"),
            Err(e) => e.message,
        }
    }

    #[test]
    fn transform_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Transform>();
    }

    #[test]
    fn passthrough_copies_key_value_and_headers() {
        let t = match Transform::compile(&TransformSpec::Passthrough) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        let r = record("not even json");
        assert_eq!(
            apply(&t, &r),
            vec![OutputRecord {
                topic: None,
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r.headers.clone(),
            }]
        );
    }

    #[test]
    fn jq_maps_the_value_and_keeps_key_and_headers() {
        let t = jq("{id, total: (.amount * 2)}", JqOutput::Value);
        let r = record(r#"{"id": 7, "amount": 21, "extra": true}"#);
        let out = apply(&t, &r);
        assert_eq!(values(&out), vec![r#"{"id":7,"total":42}"#]);
        assert_eq!(out[0].key, r.key);
        assert_eq!(out[0].headers, r.headers);
        assert_eq!(out[0].topic, None);
    }

    #[test]
    fn jq_select_drops_records() {
        let t = jq("select(.amount > 0)", JqOutput::Value);
        assert_eq!(apply(&t, &record(r#"{"amount": 0}"#)), vec![]);
        assert_eq!(
            values(&apply(&t, &record(r#"{"amount": 1}"#))),
            vec![r#"{"amount":1}"#]
        );
    }

    #[test]
    fn jq_emitting_several_values_makes_several_records_in_order() {
        let t = jq(".items[]", JqOutput::Value);
        let out = apply(&t, &record(r#"{"items": [1, "two", {"three": 3}]}"#));
        assert_eq!(values(&out), vec!["1", "\"two\"", r#"{"three":3}"#]);
    }

    #[test]
    fn jq_record_output_sets_key_topic_and_headers() {
        let t = jq(
            r#"{value: {id}, key: (.id | tostring), topic: "orders-eu", headers: {kind: "order"}}"#,
            JqOutput::Record,
        );
        let out = apply(&t, &record(r#"{"id": 9, "secret": "x"}"#));
        assert_eq!(
            out,
            vec![OutputRecord {
                topic: Some("orders-eu".into()),
                key: Some(b"9".to_vec()),
                value: Some(br#"{"id":9}"#.to_vec()),
                headers: vec![("kind".into(), Some(b"order".to_vec()))],
            }]
        );
    }

    #[test]
    fn jq_record_output_keeps_omitted_key_and_headers_and_null_makes_tombstone() {
        let t = jq("{value: null}", JqOutput::Record);
        let r = record("{}");
        assert_eq!(
            apply(&t, &r),
            vec![OutputRecord {
                topic: None,
                key: r.key.clone(),
                value: None,
                headers: r.headers.clone(),
            }]
        );
        let t = jq("{value: ., key: null}", JqOutput::Record);
        assert_eq!(apply(&t, &r)[0].key, None);
    }

    #[test]
    fn jq_variables_describe_the_record() {
        let t = jq(
            "[$key, $headers, $topic, $partition, $offset, $timestamp]",
            JqOutput::Value,
        );
        assert_eq!(
            values(&apply(&t, &record("null"))),
            vec![r#"["order-1",{"source":"web","empty":null},"orders",3,42,1700000000000]"#]
        );
        let mut r = record("null");
        r.key = None;
        r.timestamp = None;
        let t = jq("[$key, $timestamp]", JqOutput::Value);
        assert_eq!(values(&apply(&t, &r)), vec!["[null,null]"]);
    }

    #[test]
    fn tombstone_value_is_null_to_jq() {
        let t = jq(". == null", JqOutput::Value);
        let mut r = record("");
        r.value = None;
        assert_eq!(values(&apply(&t, &r)), vec!["true"]);
    }

    #[test]
    fn value_that_is_not_json_is_a_record_error() {
        let t = jq(".", JqOutput::Value);
        let message = apply_error(&t, &record("{not json"));
        assert!(message.starts_with("the value is not JSON"), "{message}");
    }

    #[test]
    fn runtime_error_is_a_record_error_with_the_message() {
        let t = jq(
            r#"if .amount < 0 then error("negative amount") else . end"#,
            JqOutput::Value,
        );
        assert_eq!(
            apply_error(&t, &record(r#"{"amount": -1}"#)),
            "the jq filter failed: negative amount"
        );
        let t = jq(".a.b", JqOutput::Value);
        let message = apply_error(&t, &record(r#"{"a": 5}"#));
        assert!(
            message.starts_with("the jq filter failed: cannot index 5"),
            "{message}"
        );
    }

    #[test]
    fn malformed_record_output_is_a_record_error() {
        let t = jq(".", JqOutput::Record);
        assert!(apply_error(&t, &record("[1]")).contains("must emit objects"));
        let t = jq("{value: ., partition: 1}", JqOutput::Record);
        assert!(apply_error(&t, &record("1")).contains("unknown field `partition`"));
        let t = jq("{value: ., key: 5}", JqOutput::Record);
        assert!(apply_error(&t, &record("1")).contains("key must be a string or null"));
        let t = jq("{value: ., topic: 5}", JqOutput::Record);
        assert!(apply_error(&t, &record("1")).contains("topic must be a string"));
    }

    #[test]
    fn values_that_are_not_json_are_refused_on_output() {
        let t = jq("nan", JqOutput::Value);
        assert!(apply_error(&t, &record("1")).contains("not a JSON number"));
        let t = jq("{(1): 2}", JqOutput::Value);
        let message = Transform::apply(&t, &record("1"));
        // jaq refuses non-string keys itself, or we do on output: an error either way.
        assert!(message.is_err());
    }

    #[test]
    fn byte_strings_are_written_raw() {
        let t = jq(r#""a,b,c" | tobytes"#, JqOutput::Value);
        assert_eq!(values(&apply(&t, &record("1"))), vec!["a,b,c"]);
    }

    #[test]
    fn numbers_keep_their_text() {
        let t = jq(".", JqOutput::Value);
        let big = r#"{"n":123456789012345678901234567890,"f":1.5,"d":0.1}"#;
        assert_eq!(values(&apply(&t, &record(big))), vec![big]);
    }

    #[test]
    fn forbidden_functions_are_refused_at_compile_time() {
        for (filter, name) in [
            ("now", "now"),
            (". + {t: now}", "now"),
            ("env.HOME", "env"),
            ("$ENV", "$ENV"),
            ("input", "input"),
            ("[inputs]", "inputs"),
            ("debug", "debug"),
            ("debug(\"x\")", "debug"),
            ("stderr", "stderr"),
            ("halt", "halt"),
            ("halt_error(1)", "halt_error"),
            ("localtime", "localtime"),
        ] {
            let message = compile_error(filter);
            assert!(
                message.starts_with(&format!("`{name}` at line 1")),
                "{filter}: {message}"
            );
            assert!(
                message.contains("is not available in Pipeline transforms"),
                "{filter}: {message}"
            );
        }
    }

    #[test]
    fn forbidden_function_message_gives_reason_and_position() {
        assert_eq!(
            compile_error(".a |\n  . + {t: now}"),
            "`now` at line 2, column 11 is not available in Pipeline transforms: it reads the \
             clock, and a transform must give the same output when a record is replayed after an \
             aborted transaction"
        );
    }

    #[test]
    fn modules_are_refused() {
        assert!(compile_error(r#"import "x" as $x; ."#).starts_with("`import` is not supported"));
        assert!(compile_error(r#"include "x"; ."#).starts_with("`include` is not supported"));
    }

    #[test]
    fn syntax_error_names_what_was_expected_and_where() {
        let message = compile_error("map(.a");
        assert!(
            message.starts_with("syntax error: expected closing parenthesis"),
            "{message}"
        );
        assert!(message.ends_with("at line 1, column 7"), "{message}");
        let message = compile_error("if . then 1");
        assert!(
            message.starts_with("syntax error: expected else or end"),
            "{message}"
        );
        let message = compile_error(".a | | .b");
        assert!(message.contains("found `|`"), "{message}");
    }

    #[test]
    fn undefined_filter_names_it_with_arity_and_position() {
        assert_eq!(
            compile_error(".a | frobnicate(1)"),
            "undefined filter `frobnicate/1` at line 1, column 6"
        );
        assert_eq!(
            compile_error("$nope"),
            "undefined variable `$nope` at line 1, column 1"
        );
    }

    #[test]
    fn standard_library_is_available() {
        let t = jq(
            r#"[(.s | test("^a")), (.s | sub("a"; "b")), (.xs | map(. * 2) | add), (.t | todate), (.s | @base64), (.xs | unique | length)]"#,
            JqOutput::Value,
        );
        assert_eq!(
            values(&apply(
                &t,
                &record(r#"{"s": "abc", "xs": [1, 2, 2], "t": 0}"#)
            )),
            vec![r#"[true,"bbc",10,"1970-01-01T00:00:00Z","YWJj",2]"#]
        );
    }

    #[test]
    fn same_input_gives_same_output() {
        let t = jq(
            r#"{k: $key, h: $headers, keys: keys_unsorted, sorted: (to_entries | sort_by(.key))} | tojson"#,
            JqOutput::Value,
        );
        let r = record(r#"{"z": 1, "a": 2, "m": {"y": 1, "b": 2}}"#);
        let first = apply(&t, &r);
        for _ in 0..10 {
            assert_eq!(apply(&t, &r), first);
        }
        // A separately compiled copy agrees too (nothing depends on the process).
        let again = jq(
            r#"{k: $key, h: $headers, keys: keys_unsorted, sorted: (to_entries | sort_by(.key))} | tojson"#,
            JqOutput::Value,
        );
        assert_eq!(apply(&again, &r), first);
    }

    #[test]
    fn too_many_outputs_is_a_record_error() {
        let t = jq("range(20000)", JqOutput::Value);
        assert!(apply_error(&t, &record("1")).contains("more than 10000 records"));
    }

    #[test]
    fn long_record_errors_are_cut() {
        let e = RecordError::new("é".repeat(2000));
        assert!(e.message.len() <= MAX_ERROR_LEN);
        assert!(e.message.ends_with("..."));
    }
}
