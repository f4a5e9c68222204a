//! ETSI GS NFV-SOL 013 query parameters over JSON objects (pure: no I/O).
//!
//! - Attribute filters (clause 5.2): `filter=(op,attr,value[,value…])[;(op,attr,value…)…]`.
//!   Terms joined with `;` must all hold. `attr` is a path whose segments are joined with `/`
//!   (`extensions/role`); arrays met on the way are searched element by element, and a term
//!   holds when any value found satisfies it (the negative operators `neq`, `nin` and `ncont`
//!   hold when none of the values found satisfies the positive one, so they also hold when the
//!   attribute is absent). Values containing `,`, `;`, `(` or `)` are written in single quotes
//!   (`'a,b'`, with `''` for a quote inside).
//!   Operators: `eq`, `neq`, `gt`, `lt`, `gte`, `lte` take one value; `in`, `nin`, `cont`,
//!   `ncont` take one or more. Comparisons are numeric when both sides are numbers, otherwise
//!   they compare text (RFC 3339 times compare correctly as text); `true`/`false`/`null` match
//!   booleans and null.
//! - Attribute selectors (clause 5.3): `all_fields`, `fields=a,b/c`, `exclude_fields=a,b/c`,
//!   `exclude_default`. Without a selector an object is returned without its default-excluded
//!   attributes (as with `exclude_default`). `fields` keeps only the listed attributes (plus the
//!   object's identifier); `exclude_fields` removes the listed ones. `all_fields` cannot be
//!   combined with the others, nor `fields` with `exclude_fields`.
//! - Paging (clause 5.4.2.1, alternative 2): a list answers at most `limit` objects (default
//!   and maximum [`MAX_PAGE_SIZE`]); when more follow, the answer carries
//!   `Link: <…?nextpage_opaque_marker=M>; rel="next"`. The marker ([`page_marker`]) is opaque
//!   to clients (base64url of the position in the filtered list, which is ordered by id), and a
//!   malformed one is refused ([`parse_paging`]).

use std::cmp::Ordering;

use base64::Engine as _;
use serde_json::{Map, Value};

/// A malformed query parameter: which one, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{parameter}: {message}")]
pub struct QueryError {
    /// The parameter (`filter`, `fields`, `exclude_fields`, `all_fields`, `exclude_default`).
    pub parameter: &'static str,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl QueryError {
    fn new(parameter: &'static str, message: impl Into<String>) -> Self {
        Self {
            parameter,
            message: message.into(),
        }
    }
}

/// A filter operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Equal.
    Eq,
    /// Not equal.
    Neq,
    /// Greater than.
    Gt,
    /// Less than.
    Lt,
    /// Greater than or equal.
    Gte,
    /// Less than or equal.
    Lte,
    /// Contains one of the values (text).
    Cont,
    /// Contains none of the values.
    Ncont,
    /// Equals one of the values.
    In,
    /// Equals none of the values.
    Nin,
}

impl Op {
    const NAMES: &'static str = "eq, neq, gt, lt, gte, lte, cont, ncont, in, nin";

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "eq" => Self::Eq,
            "neq" => Self::Neq,
            "gt" => Self::Gt,
            "lt" => Self::Lt,
            "gte" => Self::Gte,
            "lte" => Self::Lte,
            "cont" => Self::Cont,
            "ncont" => Self::Ncont,
            "in" => Self::In,
            "nin" => Self::Nin,
            _ => return None,
        })
    }

    const fn single_valued(self) -> bool {
        matches!(
            self,
            Self::Eq | Self::Neq | Self::Gt | Self::Lt | Self::Gte | Self::Lte
        )
    }
}

/// One `(op,attr,values…)` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// The operator.
    pub op: Op,
    /// The attribute path (segments of `a/b/c`).
    pub path: Vec<String>,
    /// The values (one for the single-valued operators).
    pub values: Vec<String>,
}

/// A parsed `filter`: every term must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The terms.
    pub terms: Vec<Term>,
}

const FILTER_FORM: &str = "write filters as (op,attribute,value) joined with `;`, e.g. \
     `(eq,name,site-a);(in,extensions/role,master,worker)`";

/// Splits `s` at top-level `sep` (outside single quotes); unquotes each piece.
fn split_quoted(s: &str, sep: char) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '\'' {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                    cur.push('\'');
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
        } else if c == '\'' {
            if !cur.is_empty() || was_quoted {
                return Err("a quote may only open a value".to_owned());
            }
            quoted = true;
            was_quoted = true;
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
            was_quoted = false;
        } else {
            if was_quoted {
                return Err("text after a closing quote".to_owned());
            }
            cur.push(c);
        }
    }
    if quoted {
        return Err("a quoted value is not closed".to_owned());
    }
    out.push(cur);
    Ok(out)
}

/// Splits the filter into the insides of its `(…)` terms, honouring quotes.
fn term_bodies(s: &str) -> Result<Vec<&str>, String> {
    let mut bodies = Vec::new();
    let mut quoted = false;
    let mut start = None;
    let mut expect_sep = false;
    for (i, c) in s.char_indices() {
        match (start, c) {
            (Some(_), '\'') => quoted = !quoted,
            (Some(b), ')') if !quoted => {
                bodies.push(&s[b..i]);
                start = None;
                expect_sep = true;
            }
            (Some(_), _) => {}
            (None, ';') if expect_sep => expect_sep = false,
            (None, '(') if !expect_sep => start = Some(i + 1),
            (None, c) if c.is_whitespace() => {}
            (None, c) => {
                return Err(format!(
                    "unexpected `{c}` at position {}; {FILTER_FORM}",
                    i + 1
                ));
            }
        }
    }
    if start.is_some() {
        return Err(format!("a term is not closed with `)`; {FILTER_FORM}"));
    }
    if !expect_sep {
        return Err(format!(
            "the filter is empty or ends with `;`; {FILTER_FORM}"
        ));
    }
    Ok(bodies)
}

/// Parses a `filter` parameter.
///
/// # Errors
/// The syntax is wrong, an operator is unknown, or a term has the wrong number of values.
pub fn parse_filter(s: &str) -> Result<Filter, QueryError> {
    let err = |m: String| QueryError::new("filter", m);
    let mut terms = Vec::new();
    for body in term_bodies(s).map_err(err)? {
        let parts = split_quoted(body, ',').map_err(|m| err(format!("in `({body})`: {m}")))?;
        let [op, attr, values @ ..] = parts.as_slice() else {
            return Err(err(format!(
                "`({body})` needs an operator, an attribute and a value; {FILTER_FORM}"
            )));
        };
        let op = Op::parse(op.trim()).ok_or_else(|| {
            err(format!(
                "unknown operator `{}`; use one of {}",
                op.trim(),
                Op::NAMES
            ))
        })?;
        let path = parse_path(attr).map_err(|m| err(format!("in `({body})`: {m}")))?;
        if values.is_empty() {
            return Err(err(format!("`({body})` has no value; {FILTER_FORM}")));
        }
        if op.single_valued() && values.len() != 1 {
            return Err(err(format!(
                "`({body})`: this operator takes exactly one value (use in/nin for several)"
            )));
        }
        terms.push(Term {
            op,
            path,
            values: values.to_vec(),
        });
    }
    Ok(Filter { terms })
}

fn parse_path(attr: &str) -> Result<Vec<String>, String> {
    let attr = attr.trim();
    let path: Vec<String> = attr.split('/').map(str::to_owned).collect();
    if path.iter().any(String::is_empty) {
        return Err(format!(
            "`{attr}` is not an attribute path (names joined with `/`)"
        ));
    }
    Ok(path)
}

/// The values at `path` in `v`, searching arrays element by element.
fn resolve<'a>(v: &'a Value, path: &[String], out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| resolve(i, path, out)),
        _ => match path.split_first() {
            None => out.push(v),
            Some((head, rest)) => {
                if let Some(next) = v.get(head.as_str()) {
                    resolve(next, rest, out);
                }
            }
        },
    }
}

/// Orders a JSON scalar against a query value, if they are comparable.
fn compare(v: &Value, q: &str) -> Option<Ordering> {
    match v {
        Value::Number(n) => {
            let a = n.as_f64()?;
            let b: f64 = q.trim().parse().ok()?;
            a.partial_cmp(&b)
        }
        Value::String(s) => Some(s.as_str().cmp(q)),
        Value::Bool(b) => match q {
            "true" => Some(b.cmp(&true)),
            "false" => Some(b.cmp(&false)),
            _ => None,
        },
        Value::Null => (q == "null").then_some(Ordering::Equal),
        Value::Array(_) | Value::Object(_) => None,
    }
}

fn equals(v: &Value, q: &str) -> bool {
    compare(v, q) == Some(Ordering::Equal)
}

fn contains(v: &Value, q: &str) -> bool {
    match v {
        Value::String(s) => s.contains(q),
        Value::Number(_) | Value::Bool(_) => v.to_string().contains(q),
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

impl Term {
    /// Whether `object` satisfies this term.
    #[must_use]
    pub fn matches(&self, object: &Value) -> bool {
        let mut found = Vec::new();
        resolve(object, &self.path, &mut found);
        let q = self.values.first().map_or("", String::as_str);
        let any = |f: &dyn Fn(&Value) -> bool| found.iter().any(|v| f(v));
        let ord = |v: &Value, ok: fn(Ordering) -> bool| compare(v, q).is_some_and(ok);
        match self.op {
            Op::Eq => any(&|v| equals(v, q)),
            Op::Neq => !any(&|v| equals(v, q)),
            Op::Gt => any(&|v| ord(v, Ordering::is_gt)),
            Op::Lt => any(&|v| ord(v, Ordering::is_lt)),
            Op::Gte => any(&|v| ord(v, Ordering::is_ge)),
            Op::Lte => any(&|v| ord(v, Ordering::is_le)),
            Op::In => any(&|v| self.values.iter().any(|q| equals(v, q))),
            Op::Nin => !any(&|v| self.values.iter().any(|q| equals(v, q))),
            Op::Cont => any(&|v| self.values.iter().any(|q| contains(v, q))),
            Op::Ncont => !any(&|v| self.values.iter().any(|q| contains(v, q))),
        }
    }
}

impl Filter {
    /// Whether `object` satisfies every term.
    #[must_use]
    pub fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|t| t.matches(object))
    }

    /// Checks that every term's first path segment is one of `attributes`.
    ///
    /// # Errors
    /// A term names an attribute the object type does not have.
    pub fn check_attributes(&self, attributes: &[&str]) -> Result<(), QueryError> {
        check_heads(
            "filter",
            self.terms.iter().map(|t| t.path.as_slice()),
            attributes,
        )
    }
}

fn check_heads<'a>(
    parameter: &'static str,
    paths: impl Iterator<Item = &'a [String]>,
    attributes: &[&str],
) -> Result<(), QueryError> {
    for path in paths {
        let head = path.first().map_or("", String::as_str);
        if !attributes.contains(&head) {
            return Err(QueryError::new(
                parameter,
                format!(
                    "unknown attribute `{}`; this object has {}",
                    path.join("/"),
                    attributes.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The raw selector parameters of a request (`Some("")` for a flag given without a value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectorParams {
    /// `all_fields`.
    pub all_fields: Option<String>,
    /// `fields`.
    pub fields: Option<String>,
    /// `exclude_fields`.
    pub exclude_fields: Option<String>,
    /// `exclude_default`.
    pub exclude_default: Option<String>,
}

/// A validated attribute selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Everything.
    All,
    /// The default-excluded attributes removed (the default).
    ExcludeDefault,
    /// Only these paths (plus the identifier); with `exclude_default` the default-excluded
    /// attributes that are not listed are dropped too (they are never kept anyway).
    Fields(Vec<Vec<String>>),
    /// These paths removed, and the default-excluded ones when the flag says so.
    Exclude {
        /// The paths removed.
        paths: Vec<Vec<String>>,
        /// Whether `exclude_default` was given as well.
        default: bool,
    },
}

fn parse_list(parameter: &'static str, s: &str) -> Result<Vec<Vec<String>>, QueryError> {
    let paths: Result<Vec<_>, _> = s.split(',').map(parse_path).collect();
    let paths = paths.map_err(|m| {
        QueryError::new(
            parameter,
            format!("{m}; give a comma-separated list such as `name,extensions/role`"),
        )
    })?;
    Ok(paths)
}

fn flag(parameter: &'static str, v: Option<&String>) -> Result<bool, QueryError> {
    match v.map(|s| s.trim()) {
        None => Ok(false),
        Some("" | "true") => Ok(true),
        Some(other) => Err(QueryError::new(
            parameter,
            format!("is a flag and takes no value (got `{other}`)"),
        )),
    }
}

impl SelectorParams {
    /// Validates the combination and the attribute names (first path segments must be in
    /// `attributes`).
    ///
    /// # Errors
    /// A forbidden combination, an empty list, a flag with a value or an unknown attribute.
    pub fn selector(&self, attributes: &[&str]) -> Result<Selector, QueryError> {
        let all = flag("all_fields", self.all_fields.as_ref())?;
        let default = flag("exclude_default", self.exclude_default.as_ref())?;
        if all && (self.fields.is_some() || self.exclude_fields.is_some() || default) {
            return Err(QueryError::new(
                "all_fields",
                "cannot be combined with fields, exclude_fields or exclude_default",
            ));
        }
        if self.fields.is_some() && self.exclude_fields.is_some() {
            return Err(QueryError::new(
                "exclude_fields",
                "cannot be combined with fields; use one of them",
            ));
        }
        if all {
            return Ok(Selector::All);
        }
        if let Some(f) = &self.fields {
            let paths = parse_list("fields", f)?;
            check_heads("fields", paths.iter().map(Vec::as_slice), attributes)?;
            return Ok(Selector::Fields(paths));
        }
        if let Some(f) = &self.exclude_fields {
            let paths = parse_list("exclude_fields", f)?;
            check_heads(
                "exclude_fields",
                paths.iter().map(Vec::as_slice),
                attributes,
            )?;
            return Ok(Selector::Exclude { paths, default });
        }
        Ok(Selector::ExcludeDefault)
    }
}

/// Copies the subtree at `path` of `src` into `dst` (arrays are projected element-wise).
fn copy_path(src: &Value, path: &[String], dst: &mut Value) {
    let Some((head, rest)) = path.split_first() else {
        *dst = src.clone();
        return;
    };
    match src {
        Value::Object(map) => {
            let Some(child) = map.get(head.as_str()) else {
                return;
            };
            if !dst.is_object() {
                *dst = Value::Object(Map::new());
            }
            if let Value::Object(d) = dst {
                let mut slot = d.remove(head.as_str()).unwrap_or(Value::Null);
                if rest.is_empty() {
                    slot = child.clone();
                } else {
                    copy_path(child, rest, &mut slot);
                }
                let empty = slot.is_null() || slot.as_object().is_some_and(Map::is_empty);
                if rest.is_empty() || !empty {
                    d.insert(head.clone(), slot);
                }
            }
        }
        Value::Array(items) => {
            if !matches!(dst, Value::Array(d) if d.len() == items.len()) {
                *dst = Value::Array(vec![Value::Null; items.len()]);
            }
            if let Value::Array(d) = dst {
                for (s, t) in items.iter().zip(d.iter_mut()) {
                    copy_path(s, path, t);
                }
            }
        }
        _ => {}
    }
}

/// Removes the subtree at `path` from `v` (arrays element-wise).
fn remove_path(v: &mut Value, path: &[String]) {
    let Some((head, rest)) = path.split_first() else {
        return;
    };
    match v {
        Value::Object(map) => {
            if rest.is_empty() {
                map.remove(head.as_str());
            } else if let Some(child) = map.get_mut(head.as_str()) {
                remove_path(child, rest);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| remove_path(i, path)),
        _ => {}
    }
}

impl Selector {
    /// Applies the selection to one object. `id` is the identifier attribute (always kept by
    /// `fields`); `default_excluded` the attributes left out unless asked for.
    #[must_use]
    pub fn apply(&self, object: Value, id: &str, default_excluded: &[&str]) -> Value {
        let drop_defaults = |mut v: Value| {
            for a in default_excluded {
                remove_path(&mut v, &[(*a).to_owned()]);
            }
            v
        };
        match self {
            Self::All => object,
            Self::ExcludeDefault => drop_defaults(object),
            Self::Fields(paths) => {
                let mut out = Value::Object(Map::new());
                copy_path(&object, &[id.to_owned()], &mut out);
                for p in paths {
                    copy_path(&object, p, &mut out);
                }
                out
            }
            Self::Exclude { paths, default } => {
                let mut v = if *default {
                    drop_defaults(object)
                } else {
                    object
                };
                for p in paths {
                    remove_path(&mut v, p);
                }
                v
            }
        }
    }
}

/// Most objects in one page of a list (also the default page size).
pub const MAX_PAGE_SIZE: usize = 1000;

const MARKER_PREFIX: &str = "o2ims-page:";

/// Which part of a list to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// Index of the first object (in the filtered list).
    pub start: usize,
    /// Most objects to answer.
    pub limit: usize,
}

/// The opaque marker of the page starting at `start`.
#[must_use]
pub fn page_marker(start: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{MARKER_PREFIX}{start}"))
}

/// Parses `nextpage_opaque_marker` and `limit`.
///
/// # Errors
/// The marker was not made by [`page_marker`], or the limit is not 1 to [`MAX_PAGE_SIZE`].
pub fn parse_paging(marker: Option<&str>, limit: Option<&str>) -> Result<Paging, QueryError> {
    let start = match marker {
        None => 0,
        Some(m) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(m.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|t| t.strip_prefix(MARKER_PREFIX).and_then(|n| n.parse().ok()))
            .ok_or_else(|| {
                QueryError::new(
                    "nextpage_opaque_marker",
                    "is not a marker this server gave; follow the `Link: <…>; rel=\"next\"` \
                     header of the previous page, or leave it out for the first page",
                )
            })?,
    };
    let limit = match limit {
        None => MAX_PAGE_SIZE,
        Some(l) => l
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            .ok_or_else(|| {
                QueryError::new(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_PAGE_SIZE}"),
                )
            })?,
    };
    Ok(Paging { start, limit })
}

/// The `Link` header value pointing at the page after `paging` for a request to
/// `path_and_query` (its own marker replaced), or `None` when `total` objects end there.
#[must_use]
pub fn next_link(path_and_query: &str, paging: Paging, total: usize) -> Option<String> {
    let next = paging.start.checked_add(paging.limit)?;
    if next >= total {
        return None;
    }
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("nextpage_opaque_marker="))
        .collect();
    let marker = format!("nextpage_opaque_marker={}", page_marker(next));
    params.push(&marker);
    Some(format!("<{path}?{}>; rel=\"next\"", params.join("&")))
}

#[cfg(test)]
mod tests;
