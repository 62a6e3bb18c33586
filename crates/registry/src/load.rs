//! Loading action files: TOML parsing with error recovery, per-file checks and
//! cross-file resolution, collecting every problem with its location.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::Risk;
use crate::error::Diagnostic;
use crate::model::{
    ActionDef, Bound, Constraints, CredentialsDef, ItemType, ParamDef, ParamType, Pattern,
    Precheck, RollbackParam, RollbackSource, StateField,
};
use crate::path::{PathKey, PathSegment, StatePath, Template};

type Span = Range<usize>;

/// How many structural errors one file may report before the loader gives up on it.
const MAX_STRUCTURAL_ERRORS: usize = 100;

/// The longest credential lifetime an action may ask for.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    name: Option<Spanned<String>>,
    version: Option<Spanned<String>>,
    description: Option<Spanned<String>>,
    risk: Option<Spanned<String>>,
    target_types: Option<Spanned<Vec<Spanned<String>>>>,
    reversible: Option<Spanned<bool>>,
    rollback_action: Option<Spanned<String>>,
    required_privileges: Option<Vec<Spanned<String>>>,
    tags: Option<Vec<Spanned<String>>>,
    params: Option<Vec<Spanned<RawParam>>>,
    rollback_params: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    state_fields: Option<Vec<Spanned<RawStateField>>>,
    prechecks: Option<Vec<Spanned<RawPrecheck>>>,
    credentials: Option<Spanned<RawCredentials>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    name: Option<Spanned<String>>,
    #[serde(rename = "type")]
    param_type: Option<Spanned<String>>,
    items: Option<Spanned<String>>,
    required: Option<bool>,
    default: Option<Spanned<toml::Value>>,
    description: Option<String>,
    sensitive: Option<bool>,
    target_attr: Option<Spanned<String>>,
    constraints: Option<Spanned<RawConstraints>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConstraints {
    min: Option<Spanned<toml::Value>>,
    max: Option<Spanned<toml::Value>>,
    min_length: Option<Spanned<i64>>,
    max_length: Option<Spanned<i64>>,
    pattern: Option<Spanned<String>>,
    #[serde(rename = "enum")]
    enum_values: Option<Spanned<Vec<Spanned<toml::Value>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStateField {
    name: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrecheck {
    name: Option<Spanned<String>>,
    description: Option<Spanned<String>>,
    advisory: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredentials {
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    ttl: Option<Spanned<String>>,
    fields: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
}

/// One file being loaded: its text, line index, problems and the keys recovery removed.
struct FileState<'a> {
    name: String,
    text: &'a str,
    line_starts: Vec<usize>,
    diagnostics: Vec<Diagnostic>,
    /// Keys dropped after a structural error, so their absence is not reported again.
    removed: HashSet<String>,
    /// Compiled patterns shared by every file of one load (the catalogue repeats a few).
    patterns: &'a RefCell<PatternCache>,
}

/// Checked patterns by source (sharing one lazily compiled regex), or the error message.
type PatternCache = HashMap<String, Result<Pattern, String>>;

impl<'a> FileState<'a> {
    fn new(name: String, text: &'a str, patterns: &'a RefCell<PatternCache>) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        FileState {
            name,
            text,
            line_starts,
            diagnostics: Vec::new(),
            removed: HashSet::new(),
            patterns,
        }
    }

    /// Checks `pattern` (to match whole values); on error, the one-line cause.
    fn compile(&self, pattern: &str) -> Result<Pattern, String> {
        if let Some(known) = self.patterns.borrow().get(pattern) {
            return known.clone();
        }
        let checked = Pattern::new(pattern);
        self.patterns
            .borrow_mut()
            .insert(pattern.to_owned(), checked.clone());
        checked
    }

    /// Line and column (both from 1; the column counts characters) of a byte offset.
    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts.get(line - 1).copied().unwrap_or_default();
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line, column + 1)
    }

    fn error(&mut self, span: &Span, key: &str, message: impl Into<String>) {
        let (line, column) = self.position(span.start);
        self.diagnostics.push(Diagnostic {
            file: self.name.clone(),
            line,
            column,
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// Reports `key` missing from the table at `span` (whose path is `parent`), unless an
    /// earlier structural error already removed it.
    fn missing(&mut self, span: &Span, parent: &str, key: &str) {
        let full = join(parent, key);
        if !self.removed.contains(&full) {
            self.error(span, &full, format!("missing required key `{key}`"));
        }
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// What the per-file pass hands to the cross-file pass.
struct Draft {
    file: usize,
    def: ActionDef,
    name_span: Span,
    rollback_action_span: Span,
    rollback_params_span: Option<Span>,
    /// Every `rollback_params` entry: name, span of its key, parsed source (when valid).
    rollback_entries: Vec<(String, Span, Option<RollbackSource>)>,
    /// Whether `rollback_params` was dropped by recovery (its entries are unknown).
    rollback_params_lost: bool,
    /// Whether every param was understood, so "no such param" checks can be trusted.
    params_known: bool,
}

/// Checks and resolves every source; returns the definitions, sorted by name, or every problem.
/// A parsed file: its tree and the syntax errors recovered from.
type Parsed<'a> = (Spanned<DeTable<'a>>, Vec<toml::de::Error>);

/// Parses every text, on two threads when there are enough files to be worth it (a
/// short-lived `agentsafe check` spends much of its time lexing the catalogue).
fn parse_all<'a>(texts: &[&'a str]) -> Vec<Parsed<'a>> {
    let parse = |t: &&'a str| DeTable::parse_recoverable(t);
    if texts.len() < 8 {
        return texts.iter().map(parse).collect();
    }
    let (first, second) = texts.split_at(texts.len() / 2);
    std::thread::scope(|scope| {
        let other = scope.spawn(|| second.iter().map(parse).collect::<Vec<_>>());
        let mut out: Vec<Parsed<'a>> = first.iter().map(parse).collect();
        match other.join() {
            Ok(rest) => out.extend(rest),
            // A panic in the parser: parse the rest here, where it reports as usual.
            Err(_) => out.extend(second.iter().map(parse)),
        }
        out
    })
}

pub(crate) fn load_sources(
    mut sources: Vec<(String, &str)>,
) -> Result<Vec<ActionDef>, Vec<Diagnostic>> {
    sources.sort_by(|a, b| a.0.cmp(&b.0));
    let patterns = RefCell::new(PatternCache::new());
    let texts: Vec<&str> = sources.iter().map(|(_, text)| *text).collect();
    let mut files: Vec<FileState<'_>> = sources
        .into_iter()
        .map(|(name, text)| FileState::new(name, text, &patterns))
        .collect();

    // Per-file pass. Names of files too broken for a draft are still recorded, so other
    // files naming them as a rollback action do not report a second, misleading error.
    let mut drafts = Vec::new();
    let mut broken_names = Vec::new();
    for (index, (file, (tree, syntax_errors))) in
        files.iter_mut().zip(parse_all(&texts)).enumerate()
    {
        let name = match tree.get_ref().get("name") {
            Some(v) => match v.get_ref() {
                DeValue::String(name) => Some((name.to_string(), v.span(), index)),
                _ => None,
            },
            None => None,
        };
        if !syntax_errors.is_empty() {
            for e in syntax_errors {
                let span = e.span().unwrap_or(0..0);
                file.error(&span, "", format!("invalid toml: {}", e.message()));
            }
            broken_names.extend(name);
            continue;
        }
        let Some(raw) = deserialize_recovering(tree.into_inner(), file) else {
            broken_names.extend(name);
            continue;
        };
        drafts.push(build(raw, file, index));
    }

    cross_check(&drafts, &broken_names, &mut files);

    let mut diagnostics = Vec::new();
    for file in &mut files {
        file.diagnostics.sort_by_key(|d| (d.line, d.column));
        diagnostics.append(&mut file.diagnostics);
    }
    if !diagnostics.is_empty() {
        return Err(diagnostics);
    }
    let mut defs: Vec<ActionDef> = drafts.into_iter().map(|d| d.def).collect();
    defs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(defs)
}

/// Deserializes the document; after each structural error (unknown key, wrong type) the
/// offending key is reported, removed, and deserialization retried, so every such error
/// of the file is found.
fn deserialize_recovering(mut table: DeTable<'_>, file: &mut FileState<'_>) -> Option<RawAction> {
    for _ in 0..MAX_STRUCTURAL_ERRORS {
        let root = Spanned::new(0..0, DeValue::Table(table.clone()));
        let error = match RawAction::deserialize(ValueDeserializer::from(root)) {
            Ok(raw) => return Some(raw),
            Err(error) => error,
        };
        let message = clean_serde_message(error.message());
        let Some(span) = error.span() else {
            file.error(&(0..0), "", message);
            return None;
        };
        let path = locate(&table, span.start);
        file.error(&span, &path_string(&path), message);
        match remove_key(&mut table, &path) {
            Some(removed) => {
                file.removed.insert(removed);
            }
            None => return None,
        }
    }
    None
}

/// A step of a key path in the parsed document.
#[derive(Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

fn path_string(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

fn contains(span: &Span, pos: usize) -> bool {
    span.start <= pos && (pos < span.end || (span.start == span.end && pos == span.start))
}

/// The deepest key path whose key or value covers byte `pos`.
fn locate(root: &DeTable<'_>, pos: usize) -> Vec<Seg> {
    fn table(t: &DeTable<'_>, pos: usize, path: &mut Vec<Seg>, best: &mut Vec<Seg>) {
        for (k, v) in t.iter() {
            path.push(Seg::Key(k.get_ref().to_string()));
            if (contains(&k.span(), pos) || contains(&v.span(), pos)) && path.len() > best.len() {
                best.clone_from(path);
            }
            value(v.get_ref(), pos, path, best);
            path.pop();
        }
    }
    fn value(v: &DeValue<'_>, pos: usize, path: &mut Vec<Seg>, best: &mut Vec<Seg>) {
        match v {
            DeValue::Table(t) => table(t, pos, path, best),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(Seg::Index(i));
                    if contains(&item.span(), pos) && path.len() > best.len() {
                        best.clone_from(path);
                    }
                    value(item.get_ref(), pos, path, best);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut best = Vec::new();
    table(root, pos, &mut Vec::new(), &mut best);
    best
}

/// Removes the innermost table key on `path`; returns its key path.
fn remove_key(root: &mut DeTable<'_>, path: &[Seg]) -> Option<String> {
    fn table_at<'t, 'i>(t: &'t mut DeTable<'i>, path: &[Seg]) -> Option<&'t mut DeTable<'i>> {
        let Some((first, rest)) = path.split_first() else {
            return Some(t);
        };
        let Seg::Key(k) = first else {
            return None;
        };
        value_at(t.get_mut(k.as_str())?.get_mut(), rest)
    }
    fn value_at<'t, 'i>(v: &'t mut DeValue<'i>, path: &[Seg]) -> Option<&'t mut DeTable<'i>> {
        match (v, path.split_first()) {
            (DeValue::Table(t), _) => table_at(t, path),
            (DeValue::Array(items), Some((Seg::Index(i), rest))) => {
                value_at(items.get_mut(*i)?.get_mut(), rest)
            }
            _ => None,
        }
    }
    let last = path.iter().rposition(|s| matches!(s, Seg::Key(_)))?;
    let (parent, key) = path.split_at(last);
    let Some(Seg::Key(key)) = key.first() else {
        return None;
    };
    table_at(root, parent)?.remove(key.as_str())?;
    Some(path_string(path.get(..=last).unwrap_or_default()))
}

/// Rewrites serde's messages in the house style (no Rust type names, backticks).
fn clean_serde_message(message: &str) -> String {
    let mut m = message.trim().to_owned();
    if let Some(i) = m.find("expected struct ") {
        m.truncate(i);
        m.push_str("expected a table");
    }
    m = m
        .replace("expected a map", "expected a table")
        .replace("expected a sequence", "expected an array")
        .replace("expected i64", "expected an integer")
        .replace("expected a boolean", "expected `true` or `false`");
    if let Some(rest) = m.strip_prefix("invalid type: string \"")
        && let Some(end) = rest.rfind("\", expected")
    {
        let (value, tail) = rest.split_at(end);
        m = format!(
            "invalid type: string `{value}`{}",
            tail.get(1..).unwrap_or_default()
        );
    }
    m
}

/// Checks one deserialized file and builds its definition (with placeholders where
/// required keys are missing: such a file never ends up in a registry).
fn build(raw: RawAction, file: &mut FileState<'_>, index: usize) -> Draft {
    let root = 0..0;

    let name = required(file, raw.name, &root, "", "name");
    if let Some(n) = &name
        && !is_dns_label(n.get_ref())
    {
        file.error(
            &n.span(),
            "name",
            format!(
                "invalid action name `{}`, expected lowercase letters, digits and `-`, at most 63 characters, not starting or ending with `-`",
                n.get_ref()
            ),
        );
    }
    let version = required(file, raw.version, &root, "", "version");
    if let Some(v) = &version
        && !is_version(v.get_ref())
    {
        file.error(
            &v.span(),
            "version",
            format!(
                "invalid version `{}`, expected MAJOR.MINOR.PATCH such as `1.0.0`",
                v.get_ref()
            ),
        );
    }
    let description = required(file, raw.description, &root, "", "description");
    let risk = required(file, raw.risk, &root, "", "risk").and_then(|r| {
        r.get_ref()
            .parse::<Risk>()
            .map_err(|e| file.error(&r.span(), "risk", e.to_string()))
            .ok()
    });
    let target_types = match required(file, raw.target_types, &root, "", "target_types") {
        Some(list) => {
            if list.get_ref().is_empty() {
                file.error(
                    &list.span(),
                    "target_types",
                    "must list at least one target type",
                );
            }
            word_list(
                file,
                list.into_inner(),
                "target_types",
                "target type",
                is_kebab,
            )
        }
        None => Vec::new(),
    };
    let required_privileges = word_list(
        file,
        raw.required_privileges.unwrap_or_default(),
        "required_privileges",
        "privilege",
        |s| !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control()),
    );
    let tags = word_list(file, raw.tags.unwrap_or_default(), "tags", "tag", is_kebab);

    // Params.
    let params_lost = file.removed.contains("params");
    let mut params_known = !params_lost;
    let mut params: Vec<ParamDef> = Vec::new();
    for (i, p) in raw.params.unwrap_or_default().into_iter().enumerate() {
        let key = format!("params[{i}]");
        let span = p.span();
        let name_span = p
            .get_ref()
            .name
            .as_ref()
            .map_or_else(|| span.clone(), Spanned::span);
        match build_param(p.into_inner(), &span, &key, file) {
            Some(def) => {
                if params.iter().any(|q| q.name == def.name) {
                    file.error(
                        &name_span,
                        &join(&key, "name"),
                        format!("duplicate param `{}`", def.name),
                    );
                }
                params.push(def);
            }
            None => params_known = false,
        }
    }
    // When some params were not understood, references to unknown params are not reported:
    // they would most likely be follow-up errors.
    let is_param = |n: &str| !params_known || params.iter().any(|p| p.name == n);

    // State fields.
    let state_lost = file.removed.contains("state_fields");
    let mut state_fields: Vec<StateField> = Vec::new();
    let mut state_known = !state_lost;
    for (i, s) in raw.state_fields.unwrap_or_default().into_iter().enumerate() {
        let key = format!("state_fields[{i}]");
        let span = s.span();
        let s = s.into_inner();
        let name = required(file, s.name, &span, &key, "name");
        if let Some(n) = &name {
            check_snake(file, n, &join(&key, "name"), "state field");
            if state_fields.iter().any(|f| f.name == *n.get_ref()) {
                file.error(
                    &n.span(),
                    &join(&key, "name"),
                    format!("duplicate state field `{}`", n.get_ref()),
                );
            }
        }
        let path = required(file, s.path, &span, &key, "path").and_then(|p| {
            StatePath::parse(p.get_ref(), &is_param)
                .map_err(|e| {
                    file.error(
                        &p.span(),
                        &join(&key, "path"),
                        format!("invalid state path `{}`: {e}", p.get_ref()),
                    );
                })
                .ok()
        });
        match (name, path) {
            (Some(name), Some(path)) => state_fields.push(StateField {
                name: name.into_inner(),
                path,
            }),
            _ => state_known = false,
        }
    }

    // Prechecks.
    let mut prechecks: Vec<Precheck> = Vec::new();
    for (i, c) in raw.prechecks.unwrap_or_default().into_iter().enumerate() {
        let key = format!("prechecks[{i}]");
        let span = c.span();
        let c = c.into_inner();
        let name = required(file, c.name, &span, &key, "name");
        if let Some(n) = &name {
            check_snake(file, n, &join(&key, "name"), "precheck");
            if prechecks.iter().any(|p| p.name == *n.get_ref()) {
                file.error(
                    &n.span(),
                    &join(&key, "name"),
                    format!("duplicate precheck `{}`", n.get_ref()),
                );
            }
        }
        let description = required(file, c.description, &span, &key, "description");
        if let (Some(name), Some(description)) = (name, description) {
            prechecks.push(Precheck {
                name: name.into_inner(),
                description: description.into_inner(),
                advisory: c.advisory.unwrap_or(false),
            });
        }
    }

    // Credentials.
    let credentials = raw.credentials.and_then(|c| {
        let span = c.span();
        let c = c.into_inner();
        let kind = required(file, c.kind, &span, "credentials", "type");
        if let Some(k) = &kind
            && k.get_ref().trim().is_empty()
        {
            file.error(&k.span(), "credentials.type", "must not be empty");
        }
        let ttl = required(file, c.ttl, &span, "credentials", "ttl").and_then(|t| {
            parse_duration(t.get_ref())
                .map(|d| (t.get_ref().clone(), d))
                .map_err(|e| file.error(&t.span(), "credentials.ttl", e))
                .ok()
        });
        let mut fields = BTreeMap::new();
        for (k, v) in c.fields.unwrap_or_default() {
            let key = format!("credentials.fields.{}", k.get_ref());
            match Template::parse(v.get_ref(), &is_param) {
                Ok(t) => {
                    fields.insert(k.into_inner(), t);
                }
                Err(e) => file.error(
                    &v.span(),
                    &key,
                    format!("invalid template `{}`: {e}", v.get_ref()),
                ),
            }
        }
        let (kind, (ttl_source, ttl)) = (kind?, ttl?);
        Some(CredentialsDef {
            kind: kind.into_inner(),
            ttl_source,
            ttl,
            fields,
        })
    });

    // Reversibility and rollback.
    let reversible = required(file, raw.reversible, &root, "", "reversible");
    let rollback_action = raw.rollback_action;
    match (&reversible, &rollback_action) {
        (Some(r), None) if *r.get_ref() && !file.removed.contains("rollback_action") => {
            file.error(
                &r.span(),
                "reversible",
                "`reversible = true` needs a `rollback_action`",
            );
        }
        (Some(r), Some(a)) if !*r.get_ref() => {
            file.error(
                &a.span(),
                "rollback_action",
                "`rollback_action` is set but `reversible` is false",
            );
        }
        _ => {}
    }
    if let Some(a) = &rollback_action
        && !is_dns_label(a.get_ref())
    {
        file.error(
            &a.span(),
            "rollback_action",
            format!("invalid action name `{}`", a.get_ref()),
        );
    }
    let rollback_params_lost = file.removed.contains("rollback_params");
    let rollback_params_span = raw.rollback_params.as_ref().map(Spanned::span);
    if let (Some(span), None) = (&rollback_params_span, &rollback_action) {
        file.error(
            span,
            "rollback_params",
            "`rollback_params` needs a `rollback_action`",
        );
    }
    let state_names: Vec<&str> = state_fields.iter().map(|f| f.name.as_str()).collect();
    let mut rollback_entries = Vec::new();
    let mut rollback_params = Vec::new();
    for (k, v) in raw
        .rollback_params
        .map(Spanned::into_inner)
        .unwrap_or_default()
    {
        let key = format!("rollback_params.{}", k.get_ref());
        let source = parse_rollback_source(v.get_ref(), &is_param, &|n| {
            !state_known || state_names.contains(&n)
        })
        .map_err(|e| file.error(&v.span(), &key, e))
        .ok();
        if let Some(source) = &source {
            rollback_params.push(RollbackParam {
                name: k.get_ref().clone(),
                source: source.clone(),
            });
        }
        rollback_entries.push((k.get_ref().clone(), k.span(), source));
    }

    let name_span = name.as_ref().map_or(0..0, Spanned::span);
    let rollback_action_span = rollback_action.as_ref().map_or(0..0, Spanned::span);
    Draft {
        file: index,
        def: ActionDef {
            name: name.map(Spanned::into_inner).unwrap_or_default(),
            version: version.map(Spanned::into_inner).unwrap_or_default(),
            description: description.map(Spanned::into_inner).unwrap_or_default(),
            risk: risk.unwrap_or(Risk::Critical),
            target_types,
            reversible: reversible.is_some_and(|r| *r.get_ref()),
            rollback_action: rollback_action.map(Spanned::into_inner),
            required_privileges,
            tags,
            params,
            rollback_params,
            state_fields,
            prechecks,
            credentials,
        },
        name_span,
        rollback_action_span,
        rollback_params_span,
        rollback_entries,
        rollback_params_lost,
        params_known,
    }
}

fn required<T>(
    file: &mut FileState<'_>,
    value: Option<T>,
    table: &Span,
    parent: &str,
    key: &str,
) -> Option<T> {
    if value.is_none() {
        file.missing(table, parent, key);
    }
    value
}

/// Checks a list of words (format and duplicates) and returns them.
fn word_list(
    file: &mut FileState<'_>,
    items: Vec<Spanned<String>>,
    key: &str,
    what: &str,
    valid: fn(&str) -> bool,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let item_key = format!("{key}[{i}]");
        if !valid(item.get_ref()) {
            file.error(
                &item.span(),
                &item_key,
                format!("invalid {what} `{}`", item.get_ref()),
            );
        } else if out.contains(item.get_ref()) {
            file.error(
                &item.span(),
                &item_key,
                format!("duplicate {what} `{}`", item.get_ref()),
            );
        }
        out.push(item.into_inner());
    }
    out
}

fn check_snake(file: &mut FileState<'_>, name: &Spanned<String>, key: &str, what: &str) {
    if !is_snake(name.get_ref()) {
        file.error(
            &name.span(),
            key,
            format!(
                "invalid {what} name `{}`, expected snake_case: a lowercase letter, then lowercase letters, digits and `_`",
                name.get_ref()
            ),
        );
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_kebab(s: &str) -> bool {
    !s.is_empty()
        && s.split('-').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

fn is_snake(s: &str) -> bool {
    s.len() <= 64
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn is_version(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Parses `90s`, `15m`, `1h`: a positive integer and a unit, at most [`MAX_TTL`].
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let duration = agentsafe_core::duration::parse(s)?;
    if duration.is_zero() {
        return Err(format!("duration `{s}` must be longer than zero"));
    }
    if duration > MAX_TTL {
        return Err(format!(
            "duration `{s}` is longer than the maximum of `24h`"
        ));
    }
    Ok(duration)
}

fn parse_rollback_source(
    s: &str,
    is_param: &dyn Fn(&str) -> bool,
    is_state: &dyn Fn(&str) -> bool,
) -> Result<RollbackSource, String> {
    if let Some(name) = s.strip_prefix("params.") {
        if is_param(name) {
            return Ok(RollbackSource::Param(name.to_owned()));
        }
        return Err(format!("`{s}` names no param of this action"));
    }
    if let Some(rest) = s.strip_prefix("state.") {
        let path = StatePath::parse(rest, is_param)
            .map_err(|e| format!("invalid state path `{rest}`: {e}"))?;
        return match path.segments().first() {
            Some(PathSegment::Key(PathKey::Literal(field))) if is_state(field) => {
                Ok(RollbackSource::State(path))
            }
            Some(PathSegment::Key(PathKey::Literal(field))) => Err(format!(
                "`{s}` names no state field of this action (`{field}`)"
            )),
            _ => Err(format!("`{s}` must start with a state field name")),
        };
    }
    Err(format!(
        "invalid source `{s}`, expected `params.NAME` or `state.FIELD[.path]`"
    ))
}

fn build_param(p: RawParam, span: &Span, key: &str, file: &mut FileState<'_>) -> Option<ParamDef> {
    let name = required(file, p.name, span, key, "name");
    if let Some(n) = &name {
        check_snake(file, n, &join(key, "name"), "param");
    }
    let type_key = join(key, "type");
    let param_type = required(file, p.param_type, span, key, "type").and_then(|t| {
        let ty = match t.get_ref().as_str() {
            "string" => Some(ParamType::String),
            "integer" => Some(ParamType::Integer),
            "number" => Some(ParamType::Number),
            "boolean" => Some(ParamType::Boolean),
            "object" => Some(ParamType::Object),
            "array" => {
                let items = required(file, p.items.clone(), span, key, "items")?;
                match parse_item_type(items.get_ref()) {
                    Some(item) => Some(ParamType::Array(item)),
                    None => {
                        file.error(
                            &items.span(),
                            &join(key, "items"),
                            format!(
                                "unknown item type `{}`, expected one of string, integer, number, boolean, object",
                                items.get_ref()
                            ),
                        );
                        None
                    }
                }
            }
            other => {
                file.error(
                    &t.span(),
                    &type_key,
                    format!("unknown type `{other}`, expected one of string, integer, number, boolean, array, object"),
                );
                None
            }
        };
        if let (Some(items), Some(ty)) = (&p.items, ty)
            && ty.items().is_none()
        {
            file.error(
                &items.span(),
                &join(key, "items"),
                format!("`items` only applies to arrays, not to {ty} params"),
            );
        }
        ty
    });
    if let Some(attr) = &p.target_attr
        && !is_snake(attr.get_ref())
    {
        file.error(
            &attr.span(),
            &join(key, "target_attr"),
            format!("invalid target attribute `{}`", attr.get_ref()),
        );
    }
    let constraints = match p.constraints {
        Some(c) => build_constraints(c.into_inner(), param_type, &join(key, "constraints"), file),
        None => Constraints::default(),
    };
    let mut def = ParamDef {
        name: name.map(Spanned::into_inner)?,
        param_type: param_type?,
        required: p.required.unwrap_or(true),
        default: None,
        description: p.description,
        constraints,
        sensitive: p.sensitive.unwrap_or(false),
        target_attr: p.target_attr.map(Spanned::into_inner),
    };
    if let Some(d) = p.default {
        let default_key = join(key, "default");
        match toml_to_json(d.get_ref()) {
            Ok(value) => {
                let mut errors = Vec::new();
                if def.check(&value, &mut errors) {
                    def.default = Some(value);
                }
                for e in errors {
                    let item = e
                        .param
                        .strip_prefix(def.name.as_str())
                        .and_then(|i| i.strip_prefix('['))
                        .and_then(|i| i.strip_suffix(']'));
                    let message = match item {
                        Some(i) => format!("invalid default: item {i}: {}", e.message),
                        None => format!("invalid default: {}", e.message),
                    };
                    file.error(&d.span(), &default_key, message);
                }
            }
            Err(e) => file.error(&d.span(), &default_key, format!("invalid default: {e}")),
        }
    }
    Some(def)
}

fn parse_item_type(s: &str) -> Option<ItemType> {
    match s {
        "string" => Some(ItemType::String),
        "integer" => Some(ItemType::Integer),
        "number" => Some(ItemType::Number),
        "boolean" => Some(ItemType::Boolean),
        "object" => Some(ItemType::Object),
        _ => None,
    }
}

/// Whether constraint `name` makes sense for a param of type `ty`.
fn applies(name: &str, ty: ParamType) -> bool {
    use ParamType as P;
    let base = match ty {
        P::Array(item) => item.as_param_type(),
        other => other,
    };
    match name {
        "min" | "max" => matches!(base, P::Integer | P::Number),
        "min_length" | "max_length" => matches!(ty, P::String | P::Array(_)),
        "pattern" => base == P::String,
        "enum" => matches!(base, P::String | P::Integer | P::Number | P::Boolean),
        _ => false,
    }
}

fn build_constraints(
    c: RawConstraints,
    ty: Option<ParamType>,
    key: &str,
    file: &mut FileState<'_>,
) -> Constraints {
    let base = ty.map(|t| t.items().map_or(t, ItemType::as_param_type));
    // Reports a constraint that does not fit the type; says whether it fits.
    let fits = |file: &mut FileState<'_>, name: &str, span: &Span| match ty {
        Some(t) if !applies(name, t) => {
            file.error(
                span,
                &join(key, name),
                format!("`{name}` does not apply to {t} params"),
            );
            false
        }
        _ => true,
    };
    let mut out = Constraints::default();

    let bound = |file: &mut FileState<'_>, name: &str, v: Spanned<toml::Value>| -> Option<Bound> {
        let k = join(key, name);
        match (v.get_ref(), base) {
            (toml::Value::Integer(i), _) => Some(Bound::Integer(*i)),
            (toml::Value::Float(f), Some(ParamType::Integer)) => {
                file.error(
                    &v.span(),
                    &k,
                    format!("`{name}` of an integer param must be an integer, got `{f}`"),
                );
                None
            }
            (toml::Value::Float(f), _) if f.is_finite() => Some(Bound::Number(*f)),
            (other, _) => {
                file.error(
                    &v.span(),
                    &k,
                    format!("`{name}` must be a finite number, got `{other}`"),
                );
                None
            }
        }
    };
    if let Some(v) = c.min
        && fits(file, "min", &v.span())
    {
        out.min = bound(file, "min", v);
    }
    if let Some(v) = c.max {
        let span = v.span();
        if fits(file, "max", &span) {
            out.max = bound(file, "max", v);
            if let (Some(min), Some(max)) = (out.min, out.max)
                && min.as_f64() > max.as_f64()
            {
                file.error(
                    &span,
                    &join(key, "max"),
                    format!("`max` {max} is less than `min` {min}"),
                );
            }
        }
    }

    let length = |file: &mut FileState<'_>, name: &str, v: Spanned<i64>| -> Option<u64> {
        u64::try_from(*v.get_ref())
            .map_err(|_| {
                file.error(
                    &v.span(),
                    &join(key, name),
                    format!("`{name}` must not be negative, got `{}`", v.get_ref()),
                );
            })
            .ok()
    };
    if let Some(v) = c.min_length
        && fits(file, "min_length", &v.span())
    {
        out.min_length = length(file, "min_length", v);
    }
    if let Some(v) = c.max_length {
        let span = v.span();
        if fits(file, "max_length", &span) {
            out.max_length = length(file, "max_length", v);
            if let (Some(min), Some(max)) = (out.min_length, out.max_length)
                && min > max
            {
                file.error(
                    &span,
                    &join(key, "max_length"),
                    format!("`max_length` {max} is less than `min_length` {min}"),
                );
            }
        }
    }

    if let Some(p) = c.pattern {
        let span = p.span();
        // Compile even when the constraint does not fit, so a bad regex is reported too.
        match file.compile(p.get_ref()) {
            Ok(pattern) => {
                if fits(file, "pattern", &span) {
                    out.pattern = Some(pattern);
                }
            }
            Err(e) => file.error(
                &span,
                &join(key, "pattern"),
                format!("invalid regex `{}`: {e}", p.get_ref()),
            ),
        }
    }

    if let Some(list) = c.enum_values {
        let span = list.span();
        if fits(file, "enum", &span) {
            if list.get_ref().is_empty() {
                file.error(
                    &span,
                    &join(key, "enum"),
                    "`enum` must list at least one value",
                );
            }
            let mut values = Vec::new();
            for (i, v) in list.into_inner().into_iter().enumerate() {
                let k = format!("{key}.enum[{i}]");
                let value = match toml_to_json(v.get_ref()) {
                    Ok(value) => value,
                    Err(e) => {
                        file.error(&v.span(), &k, e);
                        continue;
                    }
                };
                let Some(base) = base else {
                    values.push(value);
                    continue;
                };
                // Each allowed value must also pass the other constraints.
                let probe = ParamDef {
                    name: String::new(),
                    param_type: base,
                    required: true,
                    default: None,
                    description: None,
                    constraints: item_constraints(&out, ty),
                    sensitive: false,
                    target_attr: None,
                };
                let mut errors = Vec::new();
                if !fits_type(base, &value) {
                    file.error(
                        &v.span(),
                        &k,
                        format!(
                            "`enum` value `{}` is not of the param's type {base}",
                            v.get_ref()
                        ),
                    );
                } else if probe.check(&value, &mut errors) {
                    values.push(value);
                } else {
                    for e in errors {
                        file.error(
                            &v.span(),
                            &k,
                            format!("`enum` value breaks the param's constraints: {}", e.message),
                        );
                    }
                }
            }
            out.enum_values = Some(values);
        }
    }
    out
}

/// The constraints that apply to one value of type `ty` (for arrays: to one item, so
/// without the item-count bounds).
fn item_constraints(c: &Constraints, ty: Option<ParamType>) -> Constraints {
    let mut c = c.clone();
    if ty.is_some_and(|t| t.items().is_some()) {
        c.min_length = None;
        c.max_length = None;
    }
    c
}

fn fits_type(ty: ParamType, value: &Value) -> bool {
    match ty {
        ParamType::String => value.is_string(),
        ParamType::Integer => value.is_i64() || value.is_u64(),
        ParamType::Number => value.is_number(),
        ParamType::Boolean => value.is_boolean(),
        ParamType::Object => value.is_object(),
        ParamType::Array(_) => value.is_array(),
    }
}

fn toml_to_json(v: &toml::Value) -> Result<Value, String> {
    Ok(match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| format!("`{f}` is not a finite number"))?,
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => return Err(format!("datetime `{d}` has no JSON equivalent")),
        toml::Value::Array(items) => {
            Value::Array(items.iter().map(toml_to_json).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| Ok((k.clone(), toml_to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// Checks that need every file: duplicate names and rollback resolution.
fn cross_check(drafts: &[Draft], broken: &[(String, Span, usize)], files: &mut [FileState<'_>]) {
    // Where each name was first defined: the draft (if any) and the file.
    let mut first: HashMap<&str, (Option<usize>, usize)> = HashMap::new();
    let mut named: Vec<(&str, Span, usize, Option<usize>)> = drafts
        .iter()
        .enumerate()
        .filter(|(_, d)| !d.def.name.is_empty())
        .map(|(i, d)| (d.def.name.as_str(), d.name_span.clone(), d.file, Some(i)))
        .collect();
    named.extend(
        broken
            .iter()
            .map(|(n, s, f)| (n.as_str(), s.clone(), *f, None)),
    );
    named.sort_by_key(|(_, _, file, _)| *file);
    for (name, span, file, draft) in named {
        match first.get(name) {
            Some((_, first_file)) => {
                let first_name = files
                    .get(*first_file)
                    .map(|f| f.name.clone())
                    .unwrap_or_default();
                if let Some(f) = files.get_mut(file) {
                    f.error(
                        &span,
                        "name",
                        format!("duplicate action name `{name}`, first defined in `{first_name}`"),
                    );
                }
            }
            None => {
                first.insert(name, (draft, file));
            }
        }
    }

    for d in drafts {
        let Some(target_name) = d.def.rollback_action.as_deref() else {
            continue;
        };
        let Some(file) = files.get_mut(d.file) else {
            continue;
        };
        let target = match first.get(target_name) {
            None => {
                if is_dns_label(target_name) {
                    file.error(
                        &d.rollback_action_span,
                        "rollback_action",
                        format!("`{target_name}` names no action in the registry"),
                    );
                }
                continue;
            }
            Some((None, _)) => continue,
            Some((Some(t), _)) => match drafts.get(*t) {
                Some(t) => t,
                None => continue,
            },
        };
        if !target.params_known {
            continue;
        }
        for (name, span, source) in &d.rollback_entries {
            let key = format!("rollback_params.{name}");
            let Some(target_param) = target.def.param(name) else {
                file.error(
                    span,
                    &key,
                    format!("rollback action `{target_name}` has no param `{name}`"),
                );
                continue;
            };
            if let Some(RollbackSource::Param(own)) = source
                && let Some(own_param) = d.def.param(own)
                && own_param.param_type != target_param.param_type
            {
                file.error(
                    span,
                    &key,
                    format!(
                        "param `{name}` of `{target_name}` is {}, but `params.{own}` is {}",
                        target_param.param_type, own_param.param_type
                    ),
                );
            }
        }
        if d.rollback_params_lost {
            continue;
        }
        for p in &target.def.params {
            if p.required
                && p.default.is_none()
                && !d.rollback_entries.iter().any(|(n, _, _)| *n == p.name)
                && !file
                    .removed
                    .contains(&format!("rollback_params.{}", p.name))
            {
                let span = d
                    .rollback_params_span
                    .clone()
                    .unwrap_or_else(|| d.rollback_action_span.clone());
                file.error(
                    &span,
                    "rollback_params",
                    format!(
                        "required param `{}` of rollback action `{target_name}` is not filled",
                        p.name
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        for bad in [
            "",
            "m",
            "15",
            "1.5h",
            "-1m",
            "15 m",
            "15M",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(
            parse_duration("0s")
                .unwrap_err()
                .contains("longer than zero")
        );
        assert!(parse_duration("25h").unwrap_err().contains("maximum"));
        assert!(parse_duration("2d").unwrap_err().contains("maximum"));
    }

    #[test]
    fn positions_count_characters() {
        let patterns = RefCell::new(PatternCache::new());
        let f = FileState::new("f".into(), "ab\né = 1\n", &patterns);
        assert_eq!(f.position(0), (1, 1));
        assert_eq!(f.position(3), (2, 1));
        // `é` is two bytes; the `=` after it is the third character of line 2.
        assert_eq!(f.position(6), (2, 3));
    }

    #[test]
    fn serde_messages_are_cleaned() {
        assert_eq!(
            clean_serde_message("invalid type: string \"yes\", expected a boolean"),
            "invalid type: string `yes`, expected `true` or `false`"
        );
        assert_eq!(
            clean_serde_message("invalid type: integer `1`, expected struct RawParam"),
            "invalid type: integer `1`, expected a table"
        );
    }

    #[test]
    fn names() {
        assert!(is_dns_label("scale-deployment"));
        assert!(!is_dns_label("Scale"));
        assert!(!is_dns_label("-a"));
        assert!(is_snake("min_replicas"));
        assert!(!is_snake("minReplicas"));
        assert!(!is_snake("_a"));
        assert!(is_version("1.0.0"));
        assert!(!is_version("1.0"));
    }
}
