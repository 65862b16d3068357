//! Subscription filters: CEL expressions over one event.
//!
//! A filter sees five variables: `type` (string), `source_id` (string, empty for published
//! events), `headers` (map of lower-cased header name to its first value), `body` (the parsed
//! JSON body, `null` when the body is not JSON) and `labels` (map of string to string).
//!
//! cel 0.15 has a parser and an interpreter but no type checker, so [`Filter::compile`] runs a
//! small static check of its own over the parsed program: every identifier is one of the five
//! variables, a variable bound by a macro (`exists(x, …)`), or a type name (`int`, `map`, as in
//! `type(body.id) == string`); every function is one the interpreter declares; no condition
//! (`&&`, `||`, `!`, `?:` and the whole filter) is something that can never be a bool, such as a
//! literal, arithmetic, a string variable or a map; no comprehension is nested more than
//! [`MAX_COMPREHENSION_NESTING`] deep, since the interpreter has no cost budget and each level
//! multiplies the work by the length of a list in the body.
//!
//! Depth is bounded too. cel's ANTLR parser and its interpreter both recurse once per level of
//! nesting, with large frames in debug builds (a dozen parentheses overflow a 2 MiB stack
//! while parsing, fifty chained `+` while evaluating). So the parse runs on a thread of its own
//! with a large stack and cel's recursion limit set to [`MAX_DEPTH`], and the checker refuses
//! an expression tree deeper than [`MAX_DEPTH`], since a chain such as `1 + 1 + …` builds a
//! deep tree without deep parser recursion. A filter that passes then evaluates within a few
//! hundred KiB of stack on any thread.
//!
//! What depends on the body (`body.amount > 100` where `amount` turns out to be a string) can
//! only fail when the filter runs: [`Filter::matches`] returns an error, which the router treats
//! as "no match" and records.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, LazyLock};

use cel::common::ast::{CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue, SourceInfo, operators};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::objects::{Key, Map};
use cel::{Context, DeclarationError, Env, ExecutionError, ParseErrors, Value};

/// The longest filter source, in bytes.
pub const MAX_FILTER_LEN: usize = 4096;

/// How deeply comprehensions (`all`, `exists`, `exists_one`, `map`, `filter`) may nest.
pub const MAX_COMPREHENSION_NESTING: usize = 2;

/// How deeply a filter may nest: both cel's parser recursion limit and the most levels the
/// checked expression tree may have. Real filters stay well below ten.
pub const MAX_DEPTH: usize = 32;

/// Stack for the parsing thread. Only touched pages are committed, so this is address space.
const PARSE_STACK_BYTES: usize = 64 << 20;

/// The variables a filter may name.
pub const VARIABLES: [&str; 5] = ["type", "source_id", "headers", "body", "labels"];

/// The macros the parser expands. A call by one of these names that survives parsing was
/// written with the wrong arguments.
const MACROS: [&str; 6] = ["has", "all", "exists", "exists_one", "map", "filter"];

/// Operators the parser produces and the interpreter evaluates itself; they are not declared
/// as overloads in the `Env`, so the function probe would not find them.
const OPERATORS: [&str; 21] = [
    operators::CONDITIONAL,
    operators::LOGICAL_AND,
    operators::LOGICAL_OR,
    operators::LOGICAL_NOT,
    operators::SUBSTRACT,
    operators::ADD,
    operators::MULTIPLY,
    operators::DIVIDE,
    operators::MODULO,
    operators::EQUALS,
    operators::NOT_EQUALS,
    operators::GREATER_EQUALS,
    operators::LESS_EQUALS,
    operators::GREATER,
    operators::LESS,
    operators::NEGATE,
    operators::INDEX,
    operators::OPT_INDEX,
    operators::OPT_SELECT,
    operators::NOT_STRICTLY_FALSE,
    operators::IN,
];

/// The standard library only: no extensions, so filters stay portable to other CEL
/// implementations and the function set is exactly the spec's.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// A line and column (both from 1, columns in characters) in a filter's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("filter is empty")]
    Empty,
    #[error("filter is {len} bytes long; the limit is {MAX_FILTER_LEN}")]
    TooLong { len: usize },
    #[error("syntax error at {position}: {message}")]
    Syntax { position: Position, message: String },
    #[error("unknown variable '{name}' at {position}; filters can use type, source_id, headers, body and labels")]
    UnknownVariable { name: String, position: Position },
    #[error("unknown function '{name}' at {position}")]
    UnknownFunction { name: String, position: Position },
    #[error("unknown message type '{name}' at {position}")]
    UnknownType { name: String, position: Position },
    #[error("'{name}' at {position} is a macro and needs {usage}")]
    MacroMisuse { name: String, usage: &'static str, position: Position },
    #[error("filter must evaluate to a bool, but it is {found} (at {position})")]
    NotBool { found: &'static str, position: Position },
    #[error("expected a bool at {position}, found {found}")]
    OperandNotBool { found: &'static str, position: Position },
    #[error("cannot select field '{field}' at {position}: the value is {found}, which has no fields")]
    NoFields { field: String, found: &'static str, position: Position },
    #[error(
        "comprehensions (all, exists, exists_one, map, filter) nest more than {MAX_COMPREHENSION_NESTING} deep at {position}"
    )]
    ComprehensionTooDeep { position: Position },
    #[error("filter nests more than {MAX_DEPTH} levels deep at {position}")]
    TooDeep { position: Position },
    /// The parser thread could not be started, or the parser panicked.
    #[error("the filter could not be parsed: {0}")]
    ParserFailed(&'static str),
    /// The filter failed while running against an event. The message never quotes a value
    /// from the event, as it ends up in logs and in the delivery record.
    #[error("filter failed: {0}")]
    Evaluation(String),
    #[error("filter must evaluate to a bool, but it returned {0}")]
    NotBoolResult(String),
}

impl FilterError {
    /// Where in the source the problem is, for errors found by [`Filter::compile`].
    pub fn position(&self) -> Option<Position> {
        match self {
            FilterError::Syntax { position, .. }
            | FilterError::UnknownVariable { position, .. }
            | FilterError::UnknownFunction { position, .. }
            | FilterError::UnknownType { position, .. }
            | FilterError::MacroMisuse { position, .. }
            | FilterError::NotBool { position, .. }
            | FilterError::OperandNotBool { position, .. }
            | FilterError::NoFields { position, .. }
            | FilterError::ComprehensionTooDeep { position }
            | FilterError::TooDeep { position } => Some(*position),
            FilterError::Empty
            | FilterError::TooLong { .. }
            | FilterError::ParserFailed(_)
            | FilterError::Evaluation(_)
            | FilterError::NotBoolResult(_) => None,
        }
    }
}

/// A compiled filter; cheap to clone and shareable between threads.
#[derive(Clone)]
pub struct Filter(Arc<Compiled>);

struct Compiled {
    source: String,
    expr: IdedExpr,
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Filter").field(&self.0.source).finish()
    }
}

impl Filter {
    pub fn compile(source: &str) -> Result<Filter, FilterError> {
        if source.len() > MAX_FILTER_LEN {
            return Err(FilterError::TooLong { len: source.len() });
        }
        if source.trim().is_empty() {
            return Err(FilterError::Empty);
        }
        // The rejected trees are the deep ones, and dropping them recurses too: they are
        // parsed, checked and dropped on the big stack; only a checked tree comes back.
        let expr = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("cel-parse".to_owned())
                .stack_size(PARSE_STACK_BYTES)
                .spawn_scoped(scope, || parse_and_check(source))
                .map_err(|_| FilterError::ParserFailed("no thread for the parser"))?
                .join()
                .map_err(|_| FilterError::ParserFailed("the parser crashed on this input"))?
        })?;
        Ok(Filter(Arc::new(Compiled { source: source.to_owned(), expr })))
    }

    pub fn source(&self) -> &str {
        &self.0.source
    }

    /// Runs the filter against one event. Converts the event first; when several filters run
    /// against the same event, convert it once with [`FilterInput::new`] and call
    /// [`Filter::matches_input`].
    pub fn matches(&self, ctx: &FilterContext<'_>) -> Result<bool, FilterError> {
        self.matches_input(&FilterInput::new(ctx))
    }

    pub fn matches_input(&self, input: &FilterInput) -> Result<bool, FilterError> {
        let mut context = Context::with_env(Arc::clone(&ENV));
        context.set_variable_resolver(&input.0);
        match Value::resolve(&self.0.expr, &context) {
            Ok(Value::Bool(matched)) => Ok(matched),
            Ok(other) => Err(FilterError::NotBoolResult(other.type_of().to_string())),
            Err(e) => Err(FilterError::Evaluation(describe(&e))),
        }
    }
}

fn parse_and_check(source: &str) -> Result<IdedExpr, FilterError> {
    let (expr, source_info) = ENV
        .parser()
        .max_recursion_depth(MAX_DEPTH as u16)
        .parse_with_source_info(source)
        .map_err(|errors| syntax_error(source, &errors))?;
    let mut checker =
        Checker { source_info: &source_info, source, scopes: Vec::new(), depth: 0, comprehension_depth: 0 };
    let shape = checker.check(&expr)?;
    if let Some(found) = shape.never_bool() {
        return Err(FilterError::NotBool { found, position: checker.position(&expr) });
    }
    Ok(expr)
}

fn syntax_error(source: &str, errors: &ParseErrors) -> FilterError {
    // The first error is the one the rest follow from.
    let Some(e) = errors.errors.first() else {
        return FilterError::Syntax {
            position: Position { line: 1, column: 1 },
            message: "could not parse the filter".to_owned(),
        };
    };
    // cel reports its recursion limit through the ANTLR error it wraps, with character
    // offsets where other errors have a line and column.
    let nested = e.msg.contains("Recursion limit")
        || e.source.as_ref().is_some_and(|s| s.to_string().contains("Recursion limit"));
    if nested {
        return FilterError::TooDeep { position: position_of(source, usize::try_from(e.pos.0).unwrap_or(0)) };
    }
    FilterError::Syntax {
        position: Position { line: clamp_u32(e.pos.0), column: clamp_u32(e.pos.1) },
        message: e.msg.strip_prefix("Syntax error: ").unwrap_or(&e.msg).to_owned(),
    }
}

/// The event as a filter sees it. Borrowed, so building one per event costs nothing.
#[derive(Debug, Clone, Copy)]
pub struct FilterContext<'a> {
    pub type_: &'a str,
    pub source_id: &'a str,
    /// Lower-cased header name → its first value.
    pub headers: &'a BTreeMap<String, String>,
    /// `Null` when the body is not JSON.
    pub body: &'a serde_json::Value,
    pub labels: &'a BTreeMap<String, String>,
}

/// An event converted to CEL values, ready for any number of filters.
pub struct FilterInput(Variables);

struct Variables {
    type_: Box<dyn Val>,
    source_id: Box<dyn Val>,
    headers: Box<dyn Val>,
    body: Box<dyn Val>,
    labels: Box<dyn Val>,
}

impl FilterInput {
    pub fn new(ctx: &FilterContext<'_>) -> FilterInput {
        FilterInput(Variables {
            type_: to_val(Value::from(ctx.type_)),
            source_id: to_val(Value::from(ctx.source_id)),
            headers: to_val(string_map(ctx.headers)),
            body: to_val(json_to_cel(ctx.body)),
            labels: to_val(string_map(ctx.labels)),
        })
    }
}

impl fmt::Debug for FilterInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The body may be large and is not to be logged.
        f.debug_struct("FilterInput").finish_non_exhaustive()
    }
}

// Resolving borrows the converted values, so running a filter copies nothing from the event.
impl VariableResolver for Variables {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let val = match variable {
            "type" => &self.type_,
            "source_id" => &self.source_id,
            "headers" => &self.headers,
            "body" => &self.body,
            "labels" => &self.labels,
            _ => return None,
        };
        Some(CowVal::Borrowed(val.as_ref()))
    }
}

fn to_val(value: Value) -> Box<dyn Val> {
    // Only the Function variant fails to convert, and JSON never produces one.
    Box::<dyn Val>::try_from(value).unwrap_or_else(|_| Box::new(cel::common::types::CelNull))
}

fn string_map(map: &BTreeMap<String, String>) -> Value {
    let entries: HashMap<Key, Value> =
        map.iter().map(|(k, v)| (Key::from(k.as_str()), Value::from(v.as_str()))).collect();
    Value::Map(Map::from(entries))
}

/// JSON integers become CEL `int` when they fit, so `body.count + 1` and `body.count == 3`
/// work as written; only integers above `i64::MAX` become `uint`.
fn json_to_cel(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => Value::List(Arc::new(items.iter().map(json_to_cel).collect())),
        serde_json::Value::Object(fields) => {
            let entries: HashMap<Key, Value> =
                fields.iter().map(|(k, v)| (Key::from(k.as_str()), json_to_cel(v))).collect();
            Value::Map(Map::from(entries))
        }
    }
}

/// An execution error as a message that names types, keys and functions but never a value,
/// since values come from event bodies.
fn describe(e: &ExecutionError) -> String {
    match e {
        ExecutionError::InvalidArgumentCount { .. }
        | ExecutionError::UnexpectedType { .. }
        | ExecutionError::NoSuchKey(_)
        | ExecutionError::NoSuchOverload(_)
        | ExecutionError::UndeclaredReference(_)
        | ExecutionError::MissingArgumentOrTarget => e.to_string(),
        ExecutionError::NotSupportedAsMethod { method, target } => {
            format!("method '{method}' is not supported on {}", target.type_of())
        }
        ExecutionError::UnsupportedKeyType(key) => {
            format!("a {} cannot be a map key", key.type_of())
        }
        ExecutionError::ValuesNotComparable(a, b) => {
            format!("a {} cannot be compared to a {}", a.type_of(), b.type_of())
        }
        ExecutionError::UnsupportedBinaryOperator(op, a, b) => {
            format!("operator '{op}' does not apply to {} and {}", a.type_of(), b.type_of())
        }
        ExecutionError::UnsupportedIndex(index, target) => {
            format!("a {} cannot index a {}", index.type_of(), target.type_of())
        }
        // The message of a failing function often quotes its argument (a timestamp that does
        // not parse, say), so only the function is named.
        ExecutionError::FunctionError { function, .. } => {
            format!("function '{function}' failed")
        }
        ExecutionError::DivisionByZero(_) => "division by zero".to_owned(),
        ExecutionError::RemainderByZero(_) => "modulus by zero".to_owned(),
        ExecutionError::Overflow(op, _, _) => format!("integer overflow in '{op}'"),
        ExecutionError::IndexOutOfBounds(_) => "list index out of bounds".to_owned(),
        ExecutionError::DuplicateKey(_) => "map literal repeats a key".to_owned(),
        _ => "evaluation error".to_owned(),
    }
}

fn clamp_u32(n: isize) -> u32 {
    u32::try_from(n.max(1)).unwrap_or(u32::MAX)
}

/// Whether the interpreter declares a function of this name (global or member).
///
/// cel 0.15 keeps its overload table private; `Context::add_function` is the one public call
/// that consults it, refusing exactly the names the `Env` declares. The probe context is
/// thrown away.
fn is_declared_function(name: &str) -> bool {
    let mut probe = Context::with_env(Arc::clone(&ENV));
    matches!(probe.add_function(name, || false), Err(DeclarationError::OverloadConflict { .. }))
}

/// What the checker knows about the value an expression produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Null,
    List,
    Map,
    /// `headers` and `labels`: every value is a string.
    StringMap,
    Type,
    Timestamp,
    Duration,
    Arithmetic,
    Unknown,
}

impl Shape {
    /// A description for an error, when a value of this shape can never be a bool.
    fn never_bool(self) -> Option<&'static str> {
        Some(match self {
            Shape::Bool | Shape::Unknown => return None,
            Shape::Int => "an int",
            Shape::Uint => "a uint",
            Shape::Double => "a double",
            Shape::String => "a string",
            Shape::Bytes => "bytes",
            Shape::Null => "null",
            Shape::List => "a list",
            Shape::Map | Shape::StringMap => "a map",
            Shape::Type => "a type",
            Shape::Timestamp => "a timestamp",
            Shape::Duration => "a duration",
            Shape::Arithmetic => "an arithmetic result",
        })
    }

    /// A description for an error, when a value of this shape has no fields to select.
    fn without_fields(self) -> Option<&'static str> {
        match self {
            Shape::Map | Shape::StringMap | Shape::Unknown => None,
            other => other.never_bool().or(Some("a bool")),
        }
    }

    fn of_literal(literal: &LiteralValue) -> Shape {
        match literal {
            LiteralValue::Boolean(_) => Shape::Bool,
            LiteralValue::Bytes(_) => Shape::Bytes,
            LiteralValue::Double(_) => Shape::Double,
            LiteralValue::Int(_) => Shape::Int,
            LiteralValue::Null => Shape::Null,
            LiteralValue::String(_) => Shape::String,
            LiteralValue::UInt(_) => Shape::Uint,
        }
    }

    /// The result of a standard function, where its name alone tells.
    fn of_function(name: &str) -> Shape {
        match name {
            "size" | "int" => Shape::Int,
            "uint" => Shape::Uint,
            "double" => Shape::Double,
            "string" => Shape::String,
            "bytes" => Shape::Bytes,
            "bool" | "contains" | "startsWith" | "endsWith" | "matches" | "hasValue" => Shape::Bool,
            "type" => Shape::Type,
            "timestamp" => Shape::Timestamp,
            "duration" => Shape::Duration,
            _ if name.starts_with("get") => Shape::Int,
            _ => Shape::Unknown,
        }
    }
}

struct Checker<'a> {
    source_info: &'a SourceInfo,
    source: &'a str,
    /// Variables bound by enclosing comprehensions, innermost last.
    scopes: Vec<(&'a str, Shape)>,
    depth: usize,
    comprehension_depth: usize,
}

impl<'a> Checker<'a> {
    fn check(&mut self, expr: &'a IdedExpr) -> Result<Shape, FilterError> {
        if self.depth == MAX_DEPTH {
            return Err(FilterError::TooDeep { position: self.position(expr) });
        }
        self.depth += 1;
        let shape = self.check_node(expr);
        self.depth -= 1;
        shape
    }

    fn check_node(&mut self, expr: &'a IdedExpr) -> Result<Shape, FilterError> {
        match &expr.expr {
            Expr::Unspecified => Ok(Shape::Unknown),
            Expr::Literal(literal) => Ok(Shape::of_literal(literal)),
            Expr::Ident(name) => self.ident(expr, name),
            Expr::Select(select) => {
                if !select.test
                    && let Some(shape) = self.qualified_name(expr)?
                {
                    return Ok(shape);
                }
                let operand = self.check(&select.operand)?;
                if let Some(found) = operand.without_fields() {
                    return Err(FilterError::NoFields {
                        field: select.field.clone(),
                        found,
                        position: self.position(expr),
                    });
                }
                Ok(match (select.test, operand) {
                    (true, _) => Shape::Bool,
                    (false, Shape::StringMap) => Shape::String,
                    (false, _) => Shape::Unknown,
                })
            }
            Expr::Call(call) => self.call(expr, call),
            Expr::Comprehension(comprehension) => self.comprehension(expr, comprehension),
            Expr::List(list) => {
                for element in &list.elements {
                    self.check(element)?;
                }
                Ok(Shape::List)
            }
            Expr::Map(map) => {
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(e) = &entry.expr {
                        self.check(&e.key)?;
                        self.check(&e.value)?;
                    }
                }
                Ok(Shape::Map)
            }
            Expr::Struct(s) => {
                if ENV.types().find_struct(s.type_name.trim_start_matches('.')).is_none() {
                    return Err(FilterError::UnknownType { name: s.type_name.clone(), position: self.position(expr) });
                }
                for entry in &s.entries {
                    if let EntryExpr::StructField(field) = &entry.expr {
                        self.check(&field.value)?;
                    }
                }
                Ok(Shape::Unknown)
            }
        }
    }

    fn ident(&self, expr: &IdedExpr, name: &str) -> Result<Shape, FilterError> {
        if let Some((_, shape)) = self.scopes.iter().rev().find(|(bound, _)| *bound == name) {
            return Ok(*shape);
        }
        if let Some(shape) = variable_shape(name) {
            return Ok(shape);
        }
        if ENV.types().find_type(name.trim_start_matches('.')).is_some() {
            return Ok(Shape::Type);
        }
        Err(FilterError::UnknownVariable { name: name.to_owned(), position: self.position(expr) })
    }

    /// `a.b.c` where `a` is neither a variable nor bound: the whole is a type name such as
    /// `google.protobuf.Timestamp`, or `a` is an unknown variable. `None` when `a` is a
    /// variable, and the selection is an ordinary field access.
    fn qualified_name(&self, expr: &IdedExpr) -> Result<Option<Shape>, FilterError> {
        let Some((root, segments)) = qualified_segments(expr) else {
            return Ok(None);
        };
        if self.is_variable(root.1) {
            return Ok(None);
        }
        let name = segments.join(".");
        if ENV.types().find_type(name.trim_start_matches('.')).is_some() {
            return Ok(Some(Shape::Type));
        }
        Err(FilterError::UnknownVariable { name: root.1.to_owned(), position: self.position(root.0) })
    }

    fn is_variable(&self, name: &str) -> bool {
        self.scopes.iter().any(|(bound, _)| *bound == name) || variable_shape(name).is_some()
    }

    fn call(&mut self, expr: &'a IdedExpr, call: &'a CallExpr) -> Result<Shape, FilterError> {
        let name = call.func_name.as_str();
        if call.target.is_none() && OPERATORS.contains(&name) {
            return self.operator(call);
        }
        if MACROS.contains(&name) {
            let usage = if name == "has" {
                "a field selection, as in has(body.field)"
            } else {
                "a variable name and an expression, as in list.exists(x, x > 0)"
            };
            return Err(FilterError::MacroMisuse {
                name: name.to_owned(),
                usage,
                position: self.call_position(expr, name),
            });
        }
        // `optional.of(x)` calls the function `optional.of`; the interpreter does the same
        // when the target spells a name that is no variable.
        let mut function = name.to_owned();
        if let Some(target) = &call.target {
            match qualified_segments(target) {
                Some((root, segments)) if !self.is_variable(root.1) => {
                    function = format!("{}.{name}", segments.join("."));
                }
                _ => {
                    self.check(target)?;
                }
            }
        }
        if !is_declared_function(&function) {
            return Err(FilterError::UnknownFunction { position: self.call_position(expr, name), name: function });
        }
        for arg in &call.args {
            self.check(arg)?;
        }
        Ok(Shape::of_function(name))
    }

    fn operator(&mut self, call: &'a CallExpr) -> Result<Shape, FilterError> {
        let mut shapes = Vec::with_capacity(call.args.len());
        for arg in &call.args {
            shapes.push(self.check(arg)?);
        }
        let name = call.func_name.as_str();
        match name {
            operators::LOGICAL_AND | operators::LOGICAL_OR | operators::LOGICAL_NOT => {
                for (arg, shape) in call.args.iter().zip(&shapes) {
                    self.require_bool(arg, *shape)?;
                }
                Ok(Shape::Bool)
            }
            operators::CONDITIONAL => {
                if let (Some(condition), Some(shape)) = (call.args.first(), shapes.first()) {
                    self.require_bool(condition, *shape)?;
                }
                Ok(match (shapes.get(1), shapes.get(2)) {
                    (Some(a), Some(b)) if a == b => *a,
                    _ => Shape::Unknown,
                })
            }
            operators::EQUALS
            | operators::NOT_EQUALS
            | operators::LESS
            | operators::LESS_EQUALS
            | operators::GREATER
            | operators::GREATER_EQUALS
            | operators::IN
            | operators::NOT_STRICTLY_FALSE => Ok(Shape::Bool),
            operators::ADD
            | operators::SUBSTRACT
            | operators::MULTIPLY
            | operators::DIVIDE
            | operators::MODULO
            | operators::NEGATE => Ok(Shape::Arithmetic),
            operators::INDEX => Ok(match shapes.first() {
                Some(Shape::StringMap) => Shape::String,
                _ => Shape::Unknown,
            }),
            _ => Ok(Shape::Unknown),
        }
    }

    fn require_bool(&self, expr: &IdedExpr, shape: Shape) -> Result<(), FilterError> {
        match shape.never_bool() {
            Some(found) => Err(FilterError::OperandNotBool { found, position: self.position(expr) }),
            None => Ok(()),
        }
    }

    fn comprehension(&mut self, expr: &'a IdedExpr, c: &'a ComprehensionExpr) -> Result<Shape, FilterError> {
        self.check(&c.iter_range)?;
        let accu = self.check(&c.accu_init)?;
        if self.comprehension_depth == MAX_COMPREHENSION_NESTING {
            return Err(FilterError::ComprehensionTooDeep { position: self.position(expr) });
        }
        self.comprehension_depth += 1;
        let scope_len = self.scopes.len();
        self.scopes.push((c.iter_var.as_str(), Shape::Unknown));
        if let Some(second) = &c.iter_var2 {
            self.scopes.push((second.as_str(), Shape::Unknown));
        }
        self.scopes.push((c.accu_var.as_str(), accu));
        let result = (|| {
            self.check(&c.loop_cond)?;
            self.check(&c.loop_step)?;
            self.check(&c.result)
        })();
        self.scopes.truncate(scope_len);
        self.comprehension_depth -= 1;
        result
    }

    fn position(&self, expr: &IdedExpr) -> Position {
        position_of(self.source, self.offset(expr))
    }

    /// cel records a call at its opening parenthesis; point at the function name instead,
    /// which is where a reader looks for it.
    fn call_position(&self, expr: &IdedExpr, name: &str) -> Position {
        let offset = self.offset(expr);
        let name_start = offset.checked_sub(name.len()).filter(|&start| self.source.get(start..offset) == Some(name));
        position_of(self.source, name_start.unwrap_or(offset))
    }

    fn offset(&self, expr: &IdedExpr) -> usize {
        self.source_info.offset_for(expr.id).map_or(0, |(start, _)| start as usize)
    }
}

fn variable_shape(name: &str) -> Option<Shape> {
    match name {
        "type" | "source_id" => Some(Shape::String),
        "headers" | "labels" => Some(Shape::StringMap),
        "body" => Some(Shape::Unknown),
        _ => None,
    }
}

/// The identifier at the root of `a.b.c` and the segments `["a", "b", "c"]`, when the
/// expression is nothing but an identifier and field selections.
fn qualified_segments(expr: &IdedExpr) -> Option<((&IdedExpr, &str), Vec<&str>)> {
    let mut segments = Vec::new();
    let mut current = expr;
    loop {
        match &current.expr {
            Expr::Ident(name) => {
                segments.push(name.as_str());
                segments.reverse();
                return Some(((current, name.as_str()), segments));
            }
            Expr::Select(select) if !select.test => {
                segments.push(select.field.as_str());
                current = &select.operand;
            }
            _ => return None,
        }
    }
}

/// Line and column of a byte offset (cel's node offsets count bytes); the column counts
/// characters, as an editor does.
fn position_of(source: &str, offset: usize) -> Position {
    let mut line = 1u32;
    let mut column = 1u32;
    for (index, c) in source.char_indices() {
        if index >= offset {
            break;
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    Position { line, column }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    struct Event {
        type_: String,
        source_id: String,
        headers: BTreeMap<String, String>,
        body: serde_json::Value,
        labels: BTreeMap<String, String>,
    }

    impl Event {
        fn new(type_: &str, body: serde_json::Value) -> Event {
            Event {
                type_: type_.to_owned(),
                source_id: "src_1".to_owned(),
                headers: BTreeMap::new(),
                body,
                labels: BTreeMap::new(),
            }
        }

        fn ctx(&self) -> FilterContext<'_> {
            FilterContext {
                type_: &self.type_,
                source_id: &self.source_id,
                headers: &self.headers,
                body: &self.body,
                labels: &self.labels,
            }
        }

        fn run(&self, filter: &str) -> Result<bool, FilterError> {
            Filter::compile(filter).unwrap().matches(&self.ctx())
        }
    }

    fn compile_err(src: &str) -> FilterError {
        Filter::compile(src).expect_err(src)
    }

    #[test]
    fn filter_is_send_sync_and_clone() {
        fn assert<T: Send + Sync + Clone + 'static>() {}
        assert::<Filter>();
        fn assert_input<T: Send + Sync>() {}
        assert_input::<FilterInput>();
    }

    #[test]
    fn every_documented_variable_is_known_to_the_checker() {
        for name in VARIABLES {
            assert!(variable_shape(name).is_some(), "{name}");
            Filter::compile(&format!("{name} != null")).unwrap();
        }
    }

    #[test]
    fn type_and_body_amount() {
        let f = r#"type == "invoice.paid" && body.amount > 100"#;
        assert!(Event::new("invoice.paid", json!({"amount": 150})).run(f).unwrap());
        assert!(!Event::new("invoice.paid", json!({"amount": 50})).run(f).unwrap());
        assert!(!Event::new("invoice.voided", json!({"amount": 150})).run(f).unwrap());
        // Doubles compare with ints as numbers.
        assert!(Event::new("invoice.paid", json!({"amount": 100.5})).run(f).unwrap());
        // Integers above i64::MAX still compare.
        assert!(Event::new("invoice.paid", json!({"amount": u64::MAX})).run(f).unwrap());
    }

    #[test]
    fn json_integers_are_cel_ints() {
        let e = Event::new("t", json!({"count": 3}));
        assert!(e.run("body.count + 1 == 4").unwrap());
        assert!(e.run("type(body.count) == int").unwrap());
    }

    #[test]
    fn github_event_header() {
        let mut e = Event::new("push", json!({}));
        e.headers.insert("x-github-event".to_owned(), "push".to_owned());
        let f = r#"headers["x-github-event"] == "push""#;
        assert!(e.run(f).unwrap());
        e.headers.insert("x-github-event".to_owned(), "issues".to_owned());
        assert!(!e.run(f).unwrap());
    }

    #[test]
    fn labels_membership_and_value() {
        let f = r#""vip" in labels && labels.vip == "true""#;
        let mut e = Event::new("t", json!(null));
        assert!(!e.run(f).unwrap());
        e.labels.insert("vip".to_owned(), "true".to_owned());
        assert!(e.run(f).unwrap());
        e.labels.insert("vip".to_owned(), "false".to_owned());
        assert!(!e.run(f).unwrap());
    }

    #[test]
    fn exists_over_body_items() {
        let f = r#"body.items.exists(i, i.sku == "A")"#;
        assert!(Event::new("t", json!({"items": [{"sku": "B"}, {"sku": "A"}]})).run(f).unwrap());
        assert!(!Event::new("t", json!({"items": [{"sku": "B"}]})).run(f).unwrap());
    }

    #[test]
    fn size_of_body_items() {
        let f = "size(body.items) > 2";
        assert!(Event::new("t", json!({"items": [1, 2, 3]})).run(f).unwrap());
        assert!(!Event::new("t", json!({"items": [1, 2]})).run(f).unwrap());
    }

    #[test]
    fn standard_functions_and_macros_compile() {
        for f in [
            "has(body.amount)",
            "type.startsWith('invoice.') && source_id.endsWith('1')",
            "type.matches('^inv')",
            "string(body.id) == '7'",
            "body.tags.all(t, t != 'spam')",
            "body.items.exists_one(i, i.primary)",
            "size(body.items.filter(i, i.qty > 1)) > 0",
            "body.items.map(i, i.qty).exists(q, q > 5)",
            "optional.of(1).hasValue()",
            "timestamp(body.at) > timestamp('2020-01-01T00:00:00Z')",
            "type(body) == map",
            "body.x == null ? false : true",
            "!(type == 'a')",
            "body.items.exists(i, i.tags.exists(t, t == 'x'))",
            "body",
            "labels['k'] in ['a', 'b']",
            "{'a': 1}.a == 1",
        ] {
            Filter::compile(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }

    #[test]
    fn syntax_errors_carry_their_position() {
        let err = compile_err("type == ");
        assert!(matches!(err, FilterError::Syntax { position: Position { line: 1, column: 9 }, .. }), "{err:?}");
        assert!(err.to_string().starts_with("syntax error at 1:9: "), "{err}");
        let err = compile_err("type == 'a' &&\n  (body.x >");
        assert_eq!(err.position(), Some(Position { line: 2, column: 12 }));
    }

    #[test]
    fn unknown_variable_is_refused_with_position() {
        let err = compile_err("foo == 1");
        assert_eq!(
            err,
            FilterError::UnknownVariable { name: "foo".to_owned(), position: Position { line: 1, column: 1 } }
        );
        assert_eq!(
            err.to_string(),
            "unknown variable 'foo' at 1:1; filters can use type, source_id, headers, body and labels"
        );
        assert_eq!(compile_err("type == 'x' && foo.bar").position(), Some(Position { line: 1, column: 16 }));
        // A macro's variable is only in scope inside it.
        assert!(matches!(
            compile_err("body.items.exists(i, i > 1) && i == 2"),
            FilterError::UnknownVariable { name, .. } if name == "i"
        ));
        assert!(matches!(
            compile_err("body.items.all(i, x)"),
            FilterError::UnknownVariable { name, .. } if name == "x"
        ));
        // Column counts characters, not bytes.
        assert_eq!(compile_err("'é😀' == foo").position(), Some(Position { line: 1, column: 9 }));
        assert_eq!(compile_err("'é😀' == size(foo)").position(), Some(Position { line: 1, column: 14 }));
        assert_eq!(compile_err("'é😀' == frob(type)").position(), Some(Position { line: 1, column: 9 }));
    }

    #[test]
    fn unknown_function_is_refused_with_position() {
        let err = compile_err("frobnicate(type)");
        assert_eq!(
            err,
            FilterError::UnknownFunction { name: "frobnicate".to_owned(), position: Position { line: 1, column: 1 } }
        );
        assert_eq!(err.to_string(), "unknown function 'frobnicate' at 1:1");
        assert_eq!(
            compile_err("type.frobnicate()"),
            FilterError::UnknownFunction { name: "frobnicate".to_owned(), position: Position { line: 1, column: 6 } }
        );
        // Extension libraries are not loaded.
        assert!(matches!(
            compile_err("type.lowerAscii() == 'x'"),
            FilterError::UnknownFunction { name, .. } if name == "lowerAscii"
        ));
        assert!(matches!(
            compile_err("cel.bind(x, 1, x == 1)"),
            FilterError::UnknownFunction { name, .. } if name == "cel.bind"
        ));
        assert!(matches!(
            compile_err("body.items.exists(a, b, a > 1)"),
            FilterError::MacroMisuse { name, .. } if name == "exists"
        ));
    }

    #[test]
    fn non_bool_filters_are_refused() {
        let err = compile_err("1 + 2");
        assert!(matches!(err, FilterError::NotBool { found: "an arithmetic result", .. }), "{err:?}");
        assert!(err.to_string().starts_with("filter must evaluate to a bool"), "{err}");
        for src in [
            "1",
            "'x'",
            "[true]",
            "{'a': true}",
            "type",
            "headers",
            "labels.vip",
            "headers['x']",
            "size(body)",
            "body.items.map(i, i > 1)",
            "-body.x",
            "int",
            "true ? 1 : 2",
            "null",
        ] {
            assert!(matches!(compile_err(src), FilterError::NotBool { .. }), "{src}: {:?}", Filter::compile(src));
        }
        assert!(matches!(
            compile_err("type == 'a' && 1"),
            FilterError::OperandNotBool { found: "an int", position: Position { line: 1, column: 16 } }
        ));
        assert!(matches!(
            compile_err("body.items.all(i, 'yes')"),
            FilterError::OperandNotBool { found: "a string", .. }
        ));
        assert!(matches!(compile_err("type.foo == 'x'"), FilterError::NoFields { found: "a string", .. }));
    }

    #[test]
    fn limits() {
        assert_eq!(compile_err(""), FilterError::Empty);
        assert_eq!(compile_err("  \n "), FilterError::Empty);
        let long = format!("type == '{}'", "a".repeat(MAX_FILTER_LEN));
        assert_eq!(compile_err(&long), FilterError::TooLong { len: long.len() });
        let at_limit = format!("type == '{}'", "a".repeat(MAX_FILTER_LEN - 10));
        assert_eq!(at_limit.len(), MAX_FILTER_LEN);
        Filter::compile(&at_limit).unwrap();
        assert!(matches!(
            compile_err("body.a.all(x, body.b.all(y, body.c.all(z, z == y)))"),
            FilterError::ComprehensionTooDeep { .. }
        ));
    }

    #[test]
    fn deeply_nested_input_is_an_error_not_a_crash() {
        for open in ["(", "[", "!", "-", "{'a':", "f(", "a[", "!(", "[[1]"] {
            let src = open.repeat(MAX_FILTER_LEN / open.len());
            let err = Filter::compile(&src).unwrap_err();
            assert!(matches!(err, FilterError::TooDeep { .. } | FilterError::Syntax { .. }), "{open}: {err:?}");
        }
        let closed = format!("{}true{}", "(".repeat(2000), ")".repeat(2000));
        assert!(matches!(compile_err(&closed), FilterError::TooDeep { .. }));
        // A long chain nests in the tree without nesting in the parser.
        let chain = format!("{}1 == 1001", "1 + ".repeat(1000));
        assert!(matches!(compile_err(&chain), FilterError::TooDeep { .. }));
    }

    #[test]
    fn the_deepest_accepted_filter_evaluates_on_a_small_stack() {
        // `==`, then one level per `+`, then the literal.
        let deepest = format!("{}1 == {}", "1 + ".repeat(MAX_DEPTH - 2), MAX_DEPTH - 1);
        let too_deep = format!("{}1 == {}", "1 + ".repeat(MAX_DEPTH - 1), MAX_DEPTH);
        assert!(matches!(compile_err(&too_deep), FilterError::TooDeep { .. }));
        let filter = Filter::compile(&deepest).unwrap();
        let matched = std::thread::Builder::new()
            .stack_size(2 << 20) // tokio's default worker stack
            .spawn(move || {
                let e = Event::new("t", json!(null));
                filter.matches(&e.ctx())
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(matched, Ok(true));
    }

    #[test]
    fn runtime_errors_do_not_quote_the_body() {
        let e = Event::new("t", json!({"amount": "SECRET-VALUE", "at": "SECRET-TS"}));
        for f in [
            "body.amount > 100",
            "body.missing == 1",
            "timestamp(body.at) > timestamp('2020-01-01T00:00:00Z')",
            "body.amount + 1 == 2",
        ] {
            let err = e.run(f).unwrap_err();
            assert!(matches!(err, FilterError::Evaluation(_)), "{f}: {err:?}");
            assert!(!err.to_string().contains("SECRET"), "{f}: {err}");
        }
        assert_eq!(e.run("body.missing == 1").unwrap_err().to_string(), "filter failed: No such key: missing");
    }

    #[test]
    fn non_bool_results_are_errors() {
        let e = Event::new("t", json!({"flag": "yes"}));
        assert_eq!(e.run("body.flag").unwrap_err(), FilterError::NotBoolResult("string".to_owned()));
        assert!(Event::new("t", json!({"flag": true})).run("body.flag").unwrap());
    }

    #[test]
    fn non_json_body_is_null() {
        let e = Event::new("t", serde_json::Value::Null);
        assert!(e.run("body == null").unwrap());
        assert!(e.run("has(body.x)").is_err());
    }

    #[test]
    fn one_input_serves_many_filters() {
        let e = Event::new("invoice.paid", json!({"amount": 5}));
        let input = FilterInput::new(&e.ctx());
        let yes = Filter::compile("body.amount == 5").unwrap();
        let no = Filter::compile("type == 'x'").unwrap();
        assert!(yes.matches_input(&input).unwrap());
        assert!(!no.matches_input(&input).unwrap());
        // Shadowing a variable inside a macro does not leak out of it.
        let shadow = Filter::compile("[1].exists(body, body == 1) && body.amount == 5").unwrap();
        assert!(shadow.matches_input(&input).unwrap());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn compile_never_panics(src in "\\PC{0,64}") {
            let _ = Filter::compile(&src);
        }

        #[test]
        fn compile_never_panics_on_cel_like_text(
            src in "[a-z_. ()\\[\\]{}'\"!&|=<>+*/%,:?0-9-]{0,64}"
        ) {
            let _ = Filter::compile(&src);
        }

        #[test]
        fn comparison_on_amount_agrees_with_rust(
            amount in any::<i64>(),
            threshold in -(1i64 << 53)..(1i64 << 53),
        ) {
            let e = Event::new("t", json!({"amount": amount}));
            let f = Filter::compile(&format!("body.amount > {threshold}")).unwrap();
            prop_assert_eq!(f.matches(&e.ctx()).unwrap(), amount > threshold);
        }
    }
}
