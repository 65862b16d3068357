//! Body templates: Jinja (minijinja) templates that reshape an event before delivery.
//!
//! A template sees `type`, `source_id`, `headers` (lower-cased name → first value), `body`
//! (the parsed JSON body, `none` when the body is not JSON), `labels`, `event_id` and
//! `receive_time` (RFC 3339).
//!
//! Choices that differ from minijinja's defaults, and why:
//!
//! - No auto-escaping: the output is a JSON or text body, never HTML.
//! - Chainable undefined: webhook payloads vary between event types, and
//!   `{{ body.pull_request.user.login }}` on an event without `pull_request` renders empty
//!   rather than failing the delivery. `{{ x | tojson }}` of something missing gives `null`.
//! - Fuel: every render gets a budget of instructions and produced data, so a template cannot
//!   loop forever or build a huge string. The budget is a base ([`DEFAULT_FUEL`]) plus half a
//!   fuel per byte of the body (as JSON): minijinja charges one fuel per instruction, one per 64
//!   bytes produced and about one per 4 bytes that `tojson` serializes, so a fixed budget would
//!   fail `{{ body | tojson }}` on bodies past a few hundred KiB, while this one lets any body
//!   through `tojson` about twice and still bounds the work by the size of the input.
//! - No `include`/`extends`/`import` (minijinja's `multi_template` feature is off): a template
//!   stands alone, and there is nothing else in its environment to load.
//! - No debug info (minijinja's `debug` feature is off): it copies the render state, values
//!   included, into errors, and event bodies must not reach logs. [`TemplateError`] keeps only
//!   minijinja's message and line in any case.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use minijinja::value::{Serde, Value};
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};

/// The longest template source, in bytes.
pub const MAX_TEMPLATE_LEN: usize = 64 * 1024;

/// The fuel one render may use beyond what the body's size adds; see the module docs. About
/// 100 000 loop iterations, a few milliseconds.
pub const DEFAULT_FUEL: u64 = 100_000;

/// How deeply a render may recurse (macros calling macros, nested loops). minijinja's own
/// default, 500, overflows a 2 MiB thread stack in debug builds.
const RECURSION_LIMIT: usize = 64;

/// The name the single template is stored under in its environment; it appears in nothing
/// shown to users.
const NAME: &str = "template";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template is {len} bytes long; the limit is {MAX_TEMPLATE_LEN}")]
    TooLong { len: usize },
    #[error("syntax error{}: {message}", on_line(*line))]
    Syntax { line: Option<usize>, message: String },
    #[error("template ran out of fuel{}: it loops or produces too much", on_line(*line))]
    OutOfFuel { line: Option<usize> },
    #[error("template failed{}: {message}", on_line(*line))]
    Render { line: Option<usize>, message: String },
}

fn on_line(line: Option<usize>) -> String {
    line.map(|l| format!(" on line {l}")).unwrap_or_default()
}

impl TemplateError {
    /// The line of the template the error is on, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            TemplateError::TooLong { .. } => None,
            TemplateError::Syntax { line, .. }
            | TemplateError::OutOfFuel { line }
            | TemplateError::Render { line, .. } => *line,
        }
    }
}

/// A compiled template; cheap to clone and shareable between threads.
#[derive(Clone)]
pub struct Template(Arc<Compiled>);

struct Compiled {
    source: String,
    fuel: u64,
    env: Environment<'static>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Template").field("source", &self.0.source).field("fuel", &self.0.fuel).finish()
    }
}

impl Template {
    pub fn compile(source: &str) -> Result<Template, TemplateError> {
        Template::compile_with_fuel(source, DEFAULT_FUEL)
    }

    /// As [`Template::compile`], with another fuel budget per render.
    pub fn compile_with_fuel(source: &str, fuel: u64) -> Result<Template, TemplateError> {
        if source.len() > MAX_TEMPLATE_LEN {
            return Err(TemplateError::TooLong { len: source.len() });
        }
        // One environment per template: it holds the parsed template, so rendering does not
        // parse again, and owning its source gives it no borrowed lifetime.
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_fuel(Some(fuel));
        env.set_recursion_limit(RECURSION_LIMIT);
        env.add_template_owned(NAME, source.to_owned())
            .map_err(|e| TemplateError::Syntax { line: e.line(), message: message(&e) })?;
        Ok(Template(Arc::new(Compiled { source: source.to_owned(), fuel, env })))
    }

    pub fn source(&self) -> &str {
        &self.0.source
    }

    pub fn render(&self, ctx: &TemplateContext<'_>) -> Result<String, TemplateError> {
        // Fuel is a setting of the environment, so each render gets its own copy to set it on.
        // The copy shares the compiled template and the filter tables (all behind `Arc`s).
        let mut env = self.0.env.clone();
        let body_fuel = u64::try_from(json_size(ctx.body) / 2).unwrap_or(u64::MAX);
        env.set_fuel(Some(self.0.fuel.saturating_add(body_fuel)));
        let template = env.get_template(NAME).map_err(|e| render_error(&e))?;
        template.render(ctx.to_value()).map_err(|e| render_error(&e))
    }
}

/// The event as a template sees it. Borrowed, so building one per delivery costs nothing.
#[derive(Debug, Clone, Copy)]
pub struct TemplateContext<'a> {
    pub type_: &'a str,
    pub source_id: &'a str,
    /// Lower-cased header name → its first value.
    pub headers: &'a BTreeMap<String, String>,
    /// `Null` when the body is not JSON.
    pub body: &'a serde_json::Value,
    pub labels: &'a BTreeMap<String, String>,
    pub event_id: &'a str,
    /// RFC 3339.
    pub receive_time: &'a str,
}

impl TemplateContext<'_> {
    fn to_value(self) -> Value {
        let mut vars = BTreeMap::new();
        vars.insert("type", Value::from(self.type_));
        vars.insert("source_id", Value::from(self.source_id));
        vars.insert("headers", Value::from(Serde(self.headers)));
        vars.insert("body", Value::from(Serde(self.body)));
        vars.insert("labels", Value::from(Serde(self.labels)));
        vars.insert("event_id", Value::from(self.event_id));
        vars.insert("receive_time", Value::from(self.receive_time));
        Value::from(vars)
    }
}

/// About the length of `value` written as compact JSON, without writing it.
fn json_size(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Null => 4,
        serde_json::Value::Bool(_) => 5,
        serde_json::Value::Number(_) => 8,
        serde_json::Value::String(s) => s.len() + 2,
        serde_json::Value::Array(items) => items.iter().map(|v| json_size(v) + 1).sum::<usize>() + 2,
        serde_json::Value::Object(fields) => fields.iter().map(|(k, v)| k.len() + 4 + json_size(v)).sum::<usize>() + 2,
    }
}

/// minijinja's message without the "(in template:3)" suffix, since the line is reported on
/// its own.
fn message(e: &minijinja::Error) -> String {
    match (e.kind(), e.detail()) {
        (ErrorKind::SyntaxError, Some(detail)) => detail.to_owned(),
        // minijinja quotes both operands of failed arithmetic ("unable to calculate 7 / 0"),
        // and they may come from the body.
        (ErrorKind::InvalidOperation, Some(detail)) if detail.starts_with("unable to calculate") => {
            "invalid operation: arithmetic failed (division by zero or overflow)".to_owned()
        }
        (kind, Some(detail)) => format!("{}: {detail}", kind_text(kind)),
        (kind, None) => kind_text(kind).to_owned(),
    }
}

fn kind_text(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::SyntaxError => "invalid syntax",
        ErrorKind::UnknownFilter => "unknown filter",
        ErrorKind::UnknownTest => "unknown test",
        ErrorKind::UnknownFunction => "unknown function",
        ErrorKind::UnknownMethod => "unknown method",
        ErrorKind::MissingArgument => "missing argument",
        ErrorKind::TooManyArguments => "too many arguments",
        ErrorKind::InvalidOperation => "invalid operation",
        ErrorKind::NonKey => "not a key type",
        ErrorKind::NonPrimitive => "not a primitive",
        ErrorKind::UndefinedError => "undefined value",
        ErrorKind::BadEscape => "bad string escape",
        ErrorKind::BadSerialization => "could not serialize",
        ErrorKind::CannotDeserialize => "could not deserialize",
        ErrorKind::TemplateNotFound | ErrorKind::BadInclude => "templates cannot include others",
        _ => "error",
    }
}

fn render_error(e: &minijinja::Error) -> TemplateError {
    if e.kind() == ErrorKind::OutOfFuel {
        return TemplateError::OutOfFuel { line: e.line() };
    }
    TemplateError::Render { line: e.line(), message: message(e) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Event {
        type_: String,
        headers: BTreeMap<String, String>,
        body: serde_json::Value,
        labels: BTreeMap<String, String>,
    }

    impl Event {
        fn new(type_: &str, body: serde_json::Value) -> Event {
            Event {
                type_: type_.to_owned(),
                headers: BTreeMap::from([("x-github-event".to_owned(), "push".to_owned())]),
                body,
                labels: BTreeMap::from([("env".to_owned(), "prod".to_owned())]),
            }
        }

        fn ctx(&self) -> TemplateContext<'_> {
            TemplateContext {
                type_: &self.type_,
                source_id: "src_01",
                headers: &self.headers,
                body: &self.body,
                labels: &self.labels,
                event_id: "evt_01",
                receive_time: "2025-01-02T03:04:05Z",
            }
        }

        fn render(&self, template: &str) -> Result<String, TemplateError> {
            Template::compile(template).unwrap().render(&self.ctx())
        }
    }

    fn github_push() -> serde_json::Value {
        json!({
            "ref": "refs/heads/main",
            "repository": {"full_name": "acme/widgets"},
            "pusher": {"name": "ada"},
            "commits": [
                {"id": "a1", "message": "Fix \"quoted\" bug"},
                {"id": "b2", "message": "Add <feature> & tests"}
            ]
        })
    }

    #[test]
    fn template_is_send_sync_clone_and_static() {
        fn assert<T: Send + Sync + Clone + 'static>() {}
        assert::<Template>();
    }

    #[test]
    fn reshapes_a_github_push_into_a_chat_message() {
        let e = Event::new("push", github_push());
        let template = r#"{"text": {{ (body.pusher.name ~ " pushed " ~ (body.commits | length) ~ " commits to " ~ body.repository.full_name ~ ": " ~ (body.commits | map(attribute="message") | join("; "))) | tojson }}}"#;
        let out = e.render(template).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            parsed,
            json!({"text": "ada pushed 2 commits to acme/widgets: Fix \"quoted\" bug; Add <feature> & tests"})
        );
    }

    #[test]
    fn sees_every_variable() {
        let e = Event::new("push", json!({"n": 1}));
        let out = e
            .render("{{ type }}|{{ source_id }}|{{ headers['x-github-event'] }}|{{ body.n }}|{{ labels.env }}|{{ event_id }}|{{ receive_time }}")
            .unwrap();
        assert_eq!(out, "push|src_01|push|1|prod|evt_01|2025-01-02T03:04:05Z");
    }

    #[test]
    fn tojson_round_trips_the_body() {
        let e = Event::new("push", github_push());
        let out = e.render("{{ body | tojson }}").unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed, github_push());
        let big = json!({"big": u64::MAX, "neg": i64::MIN, "f": 1.5, "nil": null});
        let out = Event::new("t", big.clone()).render("{{ body | tojson }}").unwrap();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap(), big);
    }

    #[test]
    fn large_bodies_pass_through_tojson() {
        let items: Vec<serde_json::Value> =
            (0..20_000).map(|i| json!({"id": i, "name": format!("item {i}"), "tags": ["a", "b"]})).collect();
        let body = json!({"items": items, "blob": "x".repeat(4 << 20)});
        let out = Event::new("t", body.clone()).render("{\"data\": {{ body | tojson }}}").unwrap();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap(), json!({ "data": body }));
    }

    #[test]
    fn fuel_grows_with_the_body_but_stays_bounded() {
        let looping = "{% for i in range(10000) %}{% for j in range(10000) %}{{ i }}{% endfor %}{% endfor %}";
        let big = Event::new("t", json!({"blob": "x".repeat(1 << 20)}));
        assert!(matches!(big.render(looping), Err(TemplateError::OutOfFuel { .. })));
    }

    #[test]
    fn json_size_is_close_to_the_serialized_length() {
        let body = json!({"a": [1, 2.5, null, true, "str"], "nested": {"k": "v"}, "s": "x".repeat(1000)});
        let real = serde_json::to_string(&body).unwrap().len();
        let estimate = json_size(&body);
        assert!(estimate >= real && estimate < real + real / 4, "{estimate} vs {real}");
    }

    #[test]
    fn no_html_escaping() {
        let e = Event::new("t", json!({"s": "<b>&\"'"}));
        assert_eq!(e.render("{{ body.s }}").unwrap(), "<b>&\"'");
    }

    #[test]
    fn missing_keys_are_lenient() {
        let e = Event::new("t", json!({"a": 1}));
        assert_eq!(e.render("[{{ body.missing }}]").unwrap(), "[]");
        assert_eq!(e.render("[{{ body.missing.deeper.still }}]").unwrap(), "[]");
        assert_eq!(e.render("{{ body.missing | tojson }}").unwrap(), "null");
        assert_eq!(e.render("{% if body.missing %}yes{% else %}no{% endif %}").unwrap(), "no");
        assert_eq!(e.render("{% for x in body.missing %}{{ x }}{% endfor %}.").unwrap(), ".");
        // A body that is not JSON is none.
        let raw = Event::new("t", serde_json::Value::Null);
        assert_eq!(raw.render("{{ body | tojson }}").unwrap(), "null");
    }

    #[test]
    fn syntax_errors_report_their_line() {
        let err = Template::compile("line one\nline two\n{% if %}\n").unwrap_err();
        assert_eq!(err.line(), Some(3));
        assert!(matches!(&err, TemplateError::Syntax { line: Some(3), .. }), "{err:?}");
        assert!(err.to_string().starts_with("syntax error on line 3: "), "{err}");
        let err = Template::compile("{\n  \"a\": {{ body.a \n}").unwrap_err();
        assert_eq!(err.line(), Some(3), "{err}");
        let err = Template::compile("{% for x in y %}\n{{ x }}").unwrap_err();
        assert!(matches!(err, TemplateError::Syntax { .. }), "{err}");
    }

    #[test]
    fn runaway_loops_run_out_of_fuel() {
        let e = Event::new("t", json!({}));
        let err = e
            .render("{% for i in range(10000) %}{% for j in range(10000) %}{{ i }}{% endfor %}{% endfor %}")
            .unwrap_err();
        assert!(matches!(err, TemplateError::OutOfFuel { line: Some(1) }), "{err:?}");
        assert_eq!(err.to_string(), "template ran out of fuel on line 1: it loops or produces too much");
        let err = e.render("{{ 'x' * 100000000 }}").unwrap_err();
        assert!(matches!(err, TemplateError::OutOfFuel { .. }), "{err:?}");
    }

    #[test]
    fn fuel_is_per_render() {
        let template = Template::compile("{% for i in range(1000) %}{{ i }}{% endfor %}").unwrap();
        let e = Event::new("t", json!({}));
        for _ in 0..20 {
            template.render(&e.ctx()).unwrap();
        }
        let starved = Template::compile_with_fuel("{% for i in range(1000) %}{{ i }}{% endfor %}", 100).unwrap();
        assert!(matches!(starved.render(&e.ctx()), Err(TemplateError::OutOfFuel { .. })));
    }

    #[test]
    fn runaway_recursion_and_nesting_fail_cleanly_on_a_small_stack() {
        let deep_expr = format!("{{{{ {}1{} }}}}", "(".repeat(5000), ")".repeat(5000));
        let deep_blocks = "{% if true %}".repeat(3000);
        let deep_list = format!("{{{{ {}1{} }}}}", "[".repeat(5000), "]".repeat(5000));
        let sources = [
            "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}".to_owned(),
            "{% macro f(n) %}{% for i in range(n) %}{{ f(n) }}{% endfor %}{% endmacro %}{{ f(3) }}".to_owned(),
            deep_expr,
            deep_blocks,
            deep_list,
        ];
        std::thread::Builder::new()
            .stack_size(2 << 20) // tokio's default worker stack
            .spawn(move || {
                let e = Event::new("t", json!({}));
                for source in &sources {
                    let result = Template::compile(source).and_then(|t| t.render(&e.ctx()));
                    assert!(result.is_err(), "{}", &source[..40.min(source.len())]);
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn includes_reach_nothing() {
        // Without minijinja's `multi_template` feature these do not parse; with it, the only
        // template they can name is the template itself, which recurses into an error.
        let e = Event::new("t", json!({}));
        for source in ["{% include 'template' %}", "{% extends 'template' %}", "{% import 'template' as t %}{{ t }}"] {
            let result = Template::compile(source).and_then(|t| t.render(&e.ctx()));
            assert!(result.is_err(), "{source}: {result:?}");
        }
    }

    #[test]
    fn unknown_filters_fail_at_render_with_a_line() {
        let e = Event::new("t", json!({}));
        let err = e.render("ok\n{{ body | frobnicate }}").unwrap_err();
        assert_eq!(
            err,
            TemplateError::Render { line: Some(2), message: "unknown filter: filter frobnicate is unknown".to_owned() }
        );
    }

    #[test]
    fn errors_do_not_quote_the_body() {
        let e = Event::new("t", json!({"secret": "SECRET-VALUE", "n": "SECRET-N"}));
        let numbers = Event::new("t", json!({"n": 987654321}));
        for template in ["{{ body.n / 0 }}", "{{ body.n % 0 }}", "{{ body.n // 0 }}"] {
            let err = numbers.render(template).unwrap_err();
            assert!(!err.to_string().contains("987654321"), "{template}: {err}");
        }
        for template in
            ["{{ body.secret + 1 }}", "{{ body.n / 0 }}", "{{ body.secret | int + body }}", "{{ body.secret() }}"]
        {
            let err = e.render(template).unwrap_err();
            assert!(!err.to_string().contains("SECRET"), "{template}: {err}");
            assert!(!format!("{err:?}").contains("SECRET"), "{template}: {err:?}");
        }
    }

    #[test]
    fn size_limit() {
        let long = "x".repeat(MAX_TEMPLATE_LEN + 1);
        assert_eq!(Template::compile(&long).unwrap_err(), TemplateError::TooLong { len: long.len() });
        Template::compile(&"x".repeat(MAX_TEMPLATE_LEN)).unwrap();
    }

    #[test]
    fn empty_template_renders_empty() {
        assert_eq!(Event::new("t", json!({})).render("").unwrap(), "");
    }
}
