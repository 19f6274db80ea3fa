//! Label selectors (apimachinery `labels`: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`,
//! `a`, `!a`, `a>1`, `a<1`, and `metav1.LabelSelector` objects) and field selectors
//! (apimachinery `fields`: `f=v`, `f==v`, `f!=v`, with `\` escapes) with the per-kind field
//! sets the upstream registries support. It owns parsing, canonical printing and matching; it
//! must never fetch objects or decide what a list returns beyond "does this object match".

use std::fmt;

use serde_json::Value;

/// Why a selector could not be used. The apiserver answers 400 BadRequest with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error(
        "unable to parse requirement: found {found}, expected: {expected} (in label selector {selector:?})"
    )]
    Syntax {
        selector: String,
        found: String,
        expected: &'static str,
    },
    #[error("invalid label key {key:?} in label selector: {detail}")]
    InvalidKey { key: String, detail: String },
    #[error("invalid label value {value:?} for key {key:?} in label selector: {detail}")]
    InvalidValue {
        key: String,
        value: String,
        detail: String,
    },
    #[error("invalid field selector {selector:?}: {detail}")]
    FieldSyntax { selector: String, detail: String },
    /// Upstream text (`field label not supported: <field>`), with the supported fields appended.
    #[error("field label not supported: {field} (supported for {kind}: {supported})")]
    UnsupportedField {
        kind: String,
        field: String,
        supported: String,
    },
    #[error("invalid label selector object: {0}")]
    InvalidObject(String),
}

/// A label selector operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Sorted, deduplicated values (one for `=`/`!=`/`>`/`<`, none for exists).
    pub values: Vec<String>,
}

impl Requirement {
    /// Whether a label set (a JSON object of strings, or absent) satisfies this requirement.
    pub fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let value = labels
            .and_then(|l| l.get(&self.key))
            .and_then(Value::as_str);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => {
                value.is_some_and(|v| self.values.iter().any(|x| x == v))
            }
            Operator::NotEquals | Operator::NotIn => {
                value.is_none_or(|v| !self.values.iter().any(|x| x == v))
            }
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(v), Some(bound)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|b| b.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    v > bound
                } else {
                    v < bound
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = &self.key;
        let v = self.values.join(",");
        match self.operator {
            Operator::Equals => write!(f, "{k}={v}"),
            Operator::DoubleEquals => write!(f, "{k}=={v}"),
            Operator::NotEquals => write!(f, "{k}!={v}"),
            Operator::In => write!(f, "{k} in ({v})"),
            Operator::NotIn => write!(f, "{k} notin ({v})"),
            Operator::Exists => write!(f, "{k}"),
            Operator::DoesNotExist => write!(f, "!{k}"),
            Operator::GreaterThan => write!(f, "{k}>{v}"),
            Operator::LessThan => write!(f, "{k}<{v}"),
        }
    }
}

/// A parsed label selector: all requirements must hold. Empty selects everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
    /// A nil `metav1.LabelSelector` selects nothing.
    pub nothing: bool,
}

impl fmt::Display for LabelSelector {
    /// Canonical form: requirements sorted by key, comma separated (labels.Selector.String()).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Eq,
    DoubleEq,
    NotEq,
    Bang,
    Open,
    Close,
    Comma,
    In,
    NotIn,
    Gt,
    Lt,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Ident(s) => format!("'{s}'"),
            Token::Eq => "'='".into(),
            Token::DoubleEq => "'=='".into(),
            Token::NotEq => "'!='".into(),
            Token::Bang => "'!'".into(),
            Token::Open => "'('".into(),
            Token::Close => "')'".into(),
            Token::Comma => "','".into(),
            Token::In => "'in'".into(),
            Token::NotIn => "'notin'".into(),
            Token::Gt => "'>'".into(),
            Token::Lt => "'<'".into(),
        }
    }
}

/// Keywords are identifiers where an identifier is expected (`notin=in` is valid upstream).
fn ident(token: Option<&Token>) -> Option<String> {
    match token? {
        Token::Ident(s) => Some(s.clone()),
        Token::In => Some("in".into()),
        Token::NotIn => Some("notin".into()),
        _ => None,
    }
}

fn lex(s: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            c if c.is_whitespace() => i += 1,
            '=' if next == Some('=') => {
                out.push(Token::DoubleEq);
                i += 2;
            }
            '=' => {
                out.push(Token::Eq);
                i += 1;
            }
            '!' if next == Some('=') => {
                out.push(Token::NotEq);
                i += 2;
            }
            '!' => {
                out.push(Token::Bang);
                i += 1;
            }
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            ',' => {
                out.push(Token::Comma);
                i += 1;
            }
            '>' => {
                out.push(Token::Gt);
                i += 1;
            }
            '<' => {
                out.push(Token::Lt);
                i += 1;
            }
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !"=!(),<>".contains(chars[i])
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                out.push(match word.as_str() {
                    "in" => Token::In,
                    "notin" => Token::NotIn,
                    _ => Token::Ident(word),
                });
            }
        }
    }
    out
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'
}

/// Validates a qualified name (`[prefix/]name`) as apimachinery `IsQualifiedName` does.
pub fn validate_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            });
        if !ok {
            return Err(
                "prefix part must be a lowercase RFC 1123 subdomain (e.g. 'example.com')".into(),
            );
        }
    }
    if name.is_empty() {
        return Err("name part must be non-empty".into());
    }
    if name.len() > 63 {
        return Err("name part must be no more than 63 characters".into());
    }
    validate_name_chars(name).map_err(|_| {
        "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_string()
    })
}

fn validate_name_chars(s: &str) -> Result<(), ()> {
    let first = s.chars().next();
    let last = s.chars().last();
    if s.chars().all(is_name_char)
        && first.is_some_and(|c| c.is_ascii_alphanumeric())
        && last.is_some_and(|c| c.is_ascii_alphanumeric())
    {
        Ok(())
    } else {
        Err(())
    }
}

/// Validates a label value as apimachinery `IsValidLabelValue` does (empty is valid).
pub fn validate_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > 63 {
        return Err("must be no more than 63 characters".into());
    }
    validate_name_chars(value).map_err(|_| {
        "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".to_string()
    })
}

fn requirement(
    key: String,
    operator: Operator,
    mut values: Vec<String>,
) -> Result<Requirement, SelectorError> {
    validate_label_key(&key).map_err(|detail| SelectorError::InvalidKey {
        key: key.clone(),
        detail,
    })?;
    for v in &values {
        match operator {
            Operator::GreaterThan | Operator::LessThan => {
                if v.parse::<i64>().is_err() {
                    return Err(SelectorError::InvalidValue {
                        key: key.clone(),
                        value: v.clone(),
                        detail: "for 'Gt', 'Lt' operators, the value must be an integer".into(),
                    });
                }
            }
            _ => validate_label_value(v).map_err(|detail| SelectorError::InvalidValue {
                key: key.clone(),
                value: v.clone(),
                detail,
            })?,
        }
    }
    values.sort();
    values.dedup();
    Ok(Requirement {
        key,
        operator,
        values,
    })
}

impl LabelSelector {
    /// Parses the `labelSelector` query parameter.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let tokens = lex(selector);
        let syntax = |found: Option<&Token>, expected: &'static str| SelectorError::Syntax {
            selector: selector.to_string(),
            found: found
                .map(Token::describe)
                .unwrap_or_else(|| "end of string".into()),
            expected,
        };
        let mut reqs = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            let negated = tokens[i] == Token::Bang;
            if negated {
                i += 1;
            }
            let key = match ident(tokens.get(i)) {
                Some(k) => k,
                None => {
                    return Err(syntax(
                        tokens.get(i),
                        if negated {
                            "identifier after '!'"
                        } else {
                            "identifier"
                        },
                    ));
                }
            };
            i += 1;
            if negated {
                reqs.push(requirement(key, Operator::DoesNotExist, vec![])?);
            } else {
                match tokens.get(i) {
                    None | Some(Token::Comma) => {
                        reqs.push(requirement(key, Operator::Exists, vec![])?)
                    }
                    Some(
                        op @ (Token::Eq | Token::DoubleEq | Token::NotEq | Token::Gt | Token::Lt),
                    ) => {
                        let operator = match op {
                            Token::Eq => Operator::Equals,
                            Token::DoubleEq => Operator::DoubleEquals,
                            Token::NotEq => Operator::NotEquals,
                            Token::Gt => Operator::GreaterThan,
                            _ => Operator::LessThan,
                        };
                        i += 1;
                        let value = match tokens.get(i) {
                            t @ Some(Token::Ident(_) | Token::In | Token::NotIn) => {
                                i += 1;
                                ident(t).unwrap_or_default()
                            }
                            // `a=` selects an empty value
                            None | Some(Token::Comma)
                                if matches!(
                                    operator,
                                    Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                                ) =>
                            {
                                String::new()
                            }
                            other => return Err(syntax(other, "identifier after the operator")),
                        };
                        reqs.push(requirement(key, operator, vec![value])?);
                    }
                    Some(op @ (Token::In | Token::NotIn)) => {
                        let operator = if *op == Token::In {
                            Operator::In
                        } else {
                            Operator::NotIn
                        };
                        i += 1;
                        if tokens.get(i) != Some(&Token::Open) {
                            return Err(syntax(tokens.get(i), "'('"));
                        }
                        i += 1;
                        let mut values = Vec::new();
                        loop {
                            match tokens.get(i) {
                                t @ Some(Token::Ident(_) | Token::In | Token::NotIn) => {
                                    values.push(ident(t).unwrap_or_default());
                                    i += 1;
                                    match tokens.get(i) {
                                        Some(Token::Comma) => i += 1,
                                        Some(Token::Close) => break,
                                        other => return Err(syntax(other, "',' or ')'")),
                                    }
                                }
                                // `a in (x,)` and `a in ()` carry an empty value
                                Some(Token::Close) => {
                                    values.push(String::new());
                                    break;
                                }
                                Some(Token::Comma) => {
                                    values.push(String::new());
                                    i += 1;
                                }
                                other => return Err(syntax(other, "identifier, ',' or ')'")),
                            }
                        }
                        i += 1;
                        reqs.push(requirement(key, operator, values)?);
                    }
                    other => return Err(syntax(other, "'=', '!=', '==', 'in', 'notin'")),
                }
            }
            match tokens.get(i) {
                None => break,
                Some(Token::Comma) => {
                    i += 1;
                    if i == tokens.len() {
                        return Err(syntax(None, "identifier after ','"));
                    }
                }
                other => return Err(syntax(other, "',' or 'end of string'")),
            }
        }
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements: reqs,
            nothing: false,
        })
    }

    /// Converts a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`); `null`
    /// selects nothing, `{}` selects everything (LabelSelectorAsSelector).
    pub fn from_label_selector(selector: &Value) -> Result<Self, SelectorError> {
        let obj = match selector {
            Value::Null => {
                return Ok(Self {
                    requirements: vec![],
                    nothing: true,
                });
            }
            Value::Object(o) => o,
            other => {
                return Err(SelectorError::InvalidObject(format!(
                    "expected an object, got {other}"
                )));
            }
        };
        let mut reqs = Vec::new();
        if let Some(m) = obj.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in m {
                let v = v.as_str().ok_or_else(|| {
                    SelectorError::InvalidObject(format!("matchLabels[{k}] must be a string"))
                })?;
                reqs.push(requirement(
                    k.clone(),
                    Operator::Equals,
                    vec![v.to_string()],
                )?);
            }
        }
        for (i, e) in obj
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let field = |f: &str| e.get(f).and_then(Value::as_str).unwrap_or("").to_string();
            let values: Vec<String> = e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect();
            let operator = match field("operator").as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError::InvalidObject(format!(
                        "matchExpressions[{i}].operator {other:?} is not one of In, NotIn, Exists, DoesNotExist"
                    )));
                }
            };
            reqs.push(requirement(field("key"), operator, values)?);
        }
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements: reqs,
            nothing: false,
        })
    }

    /// Whether this selector has no requirements (and so selects everything).
    pub fn is_everything(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// Whether a label set (`metadata.labels`) matches.
    pub fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether an object's `metadata.labels` match.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.matches(
            object
                .pointer("/metadata/labels")
                .and_then(Value::as_object),
        )
    }
}

/// One term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTerm {
    pub field: String,
    /// `true` for `!=`.
    pub negated: bool,
    pub value: String,
}

/// A parsed field selector: all terms must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    pub terms: Vec<FieldTerm>,
}

/// The field labels upstream supports for a kind (besides `metadata.name` and
/// `metadata.namespace`, which every kind supports).
pub fn supported_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "Secret" => &["type"],
        "Namespace" => &["status.phase"],
        "Node" => &["spec.unschedulable"],
        "ReplicaSet" => &["status.replicas"],
        _ => &[],
    }
}

/// The string value of a selectable field of an object (`None` when the field is unsupported).
pub fn field_value(kind: &str, object: &Value, field: &str) -> Option<String> {
    if field != "metadata.name"
        && field != "metadata.namespace"
        && !supported_fields(kind).contains(&field)
    {
        return None;
    }
    let pointer = match (kind, field) {
        ("Event", "source") => "/source/component".to_string(),
        _ => format!("/{}", field.replace('.', "/")),
    };
    Some(match object.pointer(&pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        // upstream selectable fields of unset bools/ints are their zero values
        None | Some(Value::Null) => match field {
            "spec.hostNetwork" | "spec.unschedulable" => "false".into(),
            "status.replicas" => "0".into(),
            _ => String::new(),
        },
        Some(other) => other.to_string(),
    })
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            parts.last_mut().unwrap_or(&mut String::new()).push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
            if let Some(p) = parts.last_mut() {
                p.push(c);
            }
        } else if c == sep {
            parts.push(String::new());
        } else if let Some(p) = parts.last_mut() {
            p.push(c);
        }
    }
    parts
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e @ ('\\' | ',' | '=' | '!')) => out.push(e),
                Some(e) => return Err(format!("invalid escape sequence '\\{e}'")),
                None => return Err("trailing '\\'".into()),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Finds the first unescaped occurrence of `op` in `s`.
fn find_unescaped(s: &str, op: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if s[i..].starts_with(op) {
            return Some(i);
        }
        i += 1;
    }
    None
}

impl FieldSelector {
    /// Parses the `fieldSelector` query parameter (`a=b,c!=d`, `==` allowed, `\` escapes).
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        if selector.trim().is_empty() {
            return Ok(Self { terms });
        }
        for part in split_unescaped(selector, ',') {
            let bad = |detail: String| SelectorError::FieldSyntax {
                selector: selector.to_string(),
                detail,
            };
            let (field, negated, value) = if let Some(i) = find_unescaped(&part, "!=") {
                (&part[..i], true, &part[i + 2..])
            } else if let Some(i) = find_unescaped(&part, "==") {
                (&part[..i], false, &part[i + 2..])
            } else if let Some(i) = find_unescaped(&part, "=") {
                (&part[..i], false, &part[i + 1..])
            } else {
                return Err(bad(format!(
                    "invalid selector: '{part}'; can't understand '{part}'; use field=value or field!=value"
                )));
            };
            let field = field.trim();
            if field.is_empty() {
                return Err(bad(format!("term '{part}' has no field name")));
            }
            terms.push(FieldTerm {
                field: field.to_string(),
                negated,
                value: unescape(value).map_err(bad)?,
            });
        }
        Ok(Self { terms })
    }

    /// Checks that every field is selectable for `kind` (upstream: 400 `field label not supported`).
    pub fn check_supported(&self, kind: &str) -> Result<(), SelectorError> {
        for t in &self.terms {
            if t.field != "metadata.name"
                && t.field != "metadata.namespace"
                && !supported_fields(kind).contains(&t.field.as_str())
            {
                let mut all = vec!["metadata.name", "metadata.namespace"];
                all.extend_from_slice(supported_fields(kind));
                return Err(SelectorError::UnsupportedField {
                    kind: kind.to_string(),
                    field: t.field.clone(),
                    supported: all.join(", "),
                });
            }
        }
        Ok(())
    }

    /// Whether an object of `kind` matches (unsupported fields never match; call
    /// [`FieldSelector::check_supported`] first to report them).
    pub fn matches(&self, kind: &str, object: &Value) -> bool {
        self.terms
            .iter()
            .all(|t| match field_value(kind, object, &t.field) {
                Some(v) => (v == t.value) != t.negated,
                None => false,
            })
    }

    /// The name when the selector is exactly `metadata.name=<n>` (kubectl's wait/rollout form).
    pub fn single_name(&self) -> Option<&str> {
        match self.terms.as_slice() {
            [t] if t.field == "metadata.name" && !t.negated => Some(&t.value),
            _ => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn label_selector_parse_and_match_table() {
        // (selector, labels, matches) - ported from apimachinery labels selector_test.go TestSelectorMatches
        let cases = [
            ("", json!({"x": "y"}), true),
            ("x=y", json!({"x": "y"}), true),
            ("x=y,z=w", json!({"x": "y", "z": "w"}), true),
            ("x!=y,z!=w", json!({"x": "z", "z": "a"}), true),
            ("notin=in", json!({"notin": "in"}), true),
            ("x", json!({"x": "z"}), true),
            ("!x", json!({"y": "z"}), true),
            ("x>1", json!({"x": "2"}), true),
            ("x<1", json!({"x": "0"}), true),
            ("x in (y,z)", json!({"x": "z"}), true),
            ("x notin (y,z)", json!({"x": "w"}), true),
            ("x notin (y,z)", json!({}), true),
            ("x==y", json!({"x": "y"}), true),
            ("x=", json!({"x": ""}), true),
            ("x=z", json!({}), false),
            ("x=y", json!({"x": "z"}), false),
            ("x=y,z=w", json!({"x": "w", "z": "w"}), false),
            ("x!=y,z!=w", json!({"x": "z", "z": "w"}), false),
            ("x", json!({"y": "z"}), false),
            ("!x", json!({"x": "z"}), false),
            ("x>1", json!({"x": "0"}), false),
            ("x<1", json!({"x": "2"}), false),
            ("x>1", json!({"x": "abc"}), false),
            ("x in (y,z)", json!({"x": "w"}), false),
            ("x in (y,z)", json!({}), false),
            ("x notin (y,z)", json!({"x": "y"}), false),
            (
                "app=web, tier in (fe,be)",
                json!({"app": "web", "tier": "be"}),
                true,
            ),
            ("example.com/team=a", json!({"example.com/team": "a"}), true),
        ];
        for (sel, l, want) in cases {
            let s = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(Some(&labels(l.clone()))), want, "{sel} vs {l}");
        }
    }

    #[test]
    fn label_selector_syntax_errors() {
        for bad in [
            "x=a||y=b", "x==a==b", "!x=a", "x<a", "x in (a", "x in a", "x,", ",x", "x=(", "-x=a",
            "x=a b",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad} should fail");
        }
        let err = LabelSelector::parse("x in a").unwrap_err().to_string();
        assert!(err.contains("expected: '('"), "{err}");
        let err = LabelSelector::parse("-x=a").unwrap_err().to_string();
        assert!(err.contains("name part must consist"), "{err}");
    }

    #[test]
    fn label_selector_canonical_string_is_sorted() {
        let s = LabelSelector::parse("z=1, a in (c,b), !m").unwrap();
        assert_eq!(s.to_string(), "a in (b,c),!m,z=1");
    }

    #[test]
    fn label_selector_object_form() {
        let s = LabelSelector::from_label_selector(&json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}))
        .unwrap();
        assert!(s.matches_object(&json!({"metadata": {"labels": {"app": "web", "tier": "fe"}}})));
        assert!(!s.matches_object(&json!({"metadata": {"labels": {"app": "web", "tier": "db"}}})));
        assert!(
            !LabelSelector::from_label_selector(&Value::Null)
                .unwrap()
                .matches_object(&json!({}))
        );
        assert!(
            LabelSelector::from_label_selector(&json!({}))
                .unwrap()
                .matches_object(&json!({}))
        );
        assert!(
            LabelSelector::from_label_selector(
                &json!({"matchExpressions": [{"key": "a", "operator": "Like"}]})
            )
            .is_err()
        );
    }

    #[test]
    fn field_selector_kubectl_forms() {
        let s = FieldSelector::parse(
            "involvedObject.name=foo,involvedObject.namespace=default,involvedObject.uid=u1",
        )
        .unwrap();
        s.check_supported("Event").unwrap();
        let ev = json!({"involvedObject": {"name": "foo", "namespace": "default", "uid": "u1", "kind": "Pod"}, "type": "Warning"});
        assert!(s.matches("Event", &ev));
        assert!(
            !FieldSelector::parse("involvedObject.uid=u2")
                .unwrap()
                .matches("Event", &ev)
        );
        let s = FieldSelector::parse("metadata.name=web").unwrap();
        assert_eq!(s.single_name(), Some("web"));
        assert!(s.matches("Deployment", &json!({"metadata": {"name": "web"}})));
        assert!(
            FieldSelector::parse("type!=Normal")
                .unwrap()
                .matches("Event", &ev)
        );
        assert!(
            FieldSelector::parse("type==Warning")
                .unwrap()
                .matches("Event", &ev)
        );
    }

    #[test]
    fn field_selector_pod_fields_and_defaults() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        assert!(
            FieldSelector::parse("spec.nodeName=n1,status.phase=Running")
                .unwrap()
                .matches("Pod", &pod)
        );
        assert!(
            FieldSelector::parse("spec.hostNetwork=false")
                .unwrap()
                .matches("Pod", &pod)
        );
        assert!(
            FieldSelector::parse("spec.nodeName=")
                .unwrap()
                .matches("Pod", &json!({"spec": {}}))
        );
        assert!(
            FieldSelector::parse("type=kubernetes.io/dockerconfigjson")
                .unwrap()
                .matches("Secret", &json!({"type": "kubernetes.io/dockerconfigjson"}))
        );
    }

    #[test]
    fn field_selector_unsupported_field_uses_upstream_text() {
        let err = FieldSelector::parse("spec.replicas=1")
            .unwrap()
            .check_supported("Deployment")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("field label not supported: spec.replicas"),
            "{err}"
        );
        assert!(
            FieldSelector::parse("status.phase=Running")
                .unwrap()
                .check_supported("Secret")
                .is_err()
        );
    }

    #[test]
    fn field_selector_escapes_and_syntax() {
        let s = FieldSelector::parse(r"metadata.name=a\,b").unwrap();
        assert_eq!(
            s.terms,
            vec![FieldTerm {
                field: "metadata.name".into(),
                negated: false,
                value: "a,b".into()
            }]
        );
        assert!(FieldSelector::parse("metadata.name").is_err());
        assert!(FieldSelector::parse("=x").is_err());
        assert!(FieldSelector::parse(r"metadata.name=a\x").is_err());
        assert!(FieldSelector::parse("").unwrap().is_empty());
    }
}
