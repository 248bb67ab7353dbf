//! Partial rules files: a user's file laid over the built-in defaults.
//!
//! A user file names only what it changes. Tables merge key by key, the
//! user's value winning; any other value, arrays included, replaces the
//! default as a whole. `[[signature]]` and `[[plan]]` are ordered lists
//! whose meaning depends on every entry (the first matching signature
//! decides, one plan per alarm), so splicing half of one into the other
//! would give a decision table nobody wrote.
//!
//! Errors must point into the user's file, so both documents are parsed
//! with their spans and the defaults' spans are moved past the end of the
//! user's text: one offset space ([`Layers`]) in which a span says both
//! which document it is in and where.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The two documents behind a merged one, and where each one's spans lie.
#[derive(Clone, Copy)]
pub(super) struct Layers<'a> {
    /// The user's file: spans `0..user.len()`.
    pub(super) user: &'a str,
}

impl Layers<'_> {
    /// Where the defaults' spans start: past the user's text, so no span of
    /// one can be taken for the other's.
    pub(super) fn defaults_base(&self) -> usize {
        self.user.len() + 1
    }

    /// `span`, if it lies in the user's file.
    pub(super) fn in_user(&self, span: &Range<usize>) -> Option<Range<usize>> {
        (span.start < self.defaults_base()).then(|| span.start.min(self.user.len())..span.end.min(self.user.len()))
    }
}

/// A user's file merged over the defaults.
pub(super) struct Merged<'a> {
    /// The effective document.
    pub(super) doc: Spanned<DeTable<'a>>,
    /// The settings the user's file names, dotted (`thresholds.zombie_max`;
    /// an array such as `plan` is one setting).
    pub(super) named: Vec<String>,
}

/// Parses both documents and lays `user` over `defaults`. A TOML error in
/// `user` comes back as it is; one in `defaults` (a build bug) has its span
/// in the defaults' range.
pub(super) fn merge<'a>(user: &'a str, defaults: &'a str) -> Result<Merged<'a>, toml::de::Error> {
    let layers = Layers { user };
    let top = DeTable::parse(user)?;
    let base = DeTable::parse(defaults)?;
    let base_span = base.span();
    let mut base = shift_table(base.into_inner(), layers.defaults_base());
    let mut named = Vec::new();
    settings(top.get_ref(), "", &mut named);
    let consults_named = top.get_ref().contains_key("llm_diagnosis");
    let span = if user.trim().is_empty() { shifted(base_span, layers.defaults_base()) } else { top.span() };
    overlay(&mut base, top.into_inner());
    // `[llm_diagnosis]` says what an LLM's answer leads to, and a table no
    // plan uses is refused as a mistake. The defaults' own table comes in
    // only where a plan still consults the LLM: replacing `[[plan]]` with
    // plans that do not should not make the file invalid.
    if !consults_named && !consults_llm(&base) {
        base.remove("llm_diagnosis");
    }
    Ok(Merged { doc: Spanned::new(span, base), named })
}

/// Lays `top` over `base`: tables merge key by key, anything else replaces.
fn overlay<'a>(base: &mut DeTable<'a>, top: DeTable<'a>) {
    for (key, value) in top {
        let span = value.span();
        let merged = match (base.remove(&key).map(Spanned::into_inner), value.into_inner()) {
            (Some(DeValue::Table(mut under)), DeValue::Table(over)) => {
                overlay(&mut under, over);
                DeValue::Table(under)
            }
            (_, value) => value,
        };
        base.insert(key, Spanned::new(span, merged));
    }
}

/// Whether any `[[plan]]` of `doc` has a `consult_llm` step.
fn consults_llm(doc: &DeTable<'_>) -> bool {
    let Some(DeValue::Array(plans)) = doc.get("plan").map(Spanned::get_ref) else { return false };
    plans.iter().any(|plan| {
        let Some(DeValue::Array(steps)) = plan.get_ref().as_table().and_then(|t| t.get("steps")).map(Spanned::get_ref)
        else {
            return false;
        };
        steps.iter().any(|s| s.get_ref().as_str() == Some("consult_llm"))
    })
}

/// The settings `table` names, dotted, under `prefix`.
fn settings(table: &DeTable<'_>, prefix: &str, out: &mut Vec<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() { key.get_ref().to_string() } else { format!("{prefix}.{}", key.get_ref()) };
        match value.get_ref() {
            DeValue::Table(t) => settings(t, &path, out),
            _ => out.push(path),
        }
    }
}

fn shifted(span: Range<usize>, by: usize) -> Range<usize> {
    span.start.saturating_add(by)..span.end.saturating_add(by)
}

fn shift_table(table: DeTable<'_>, by: usize) -> DeTable<'_> {
    table
        .into_iter()
        .map(|(k, v)| {
            let span = shifted(k.span(), by);
            (Spanned::new(span, k.into_inner()), shift(v, by))
        })
        .collect()
}

fn shift(value: Spanned<DeValue<'_>>, by: usize) -> Spanned<DeValue<'_>> {
    let span = shifted(value.span(), by);
    let inner = match value.into_inner() {
        DeValue::Table(t) => DeValue::Table(shift_table(t, by)),
        DeValue::Array(a) => DeValue::Array(a.into_iter().map(|v| shift(v, by)).collect()),
        other => other,
    };
    Spanned::new(span, inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(user: &str, defaults: &str) -> toml::Table {
        let m = merge(user, defaults).unwrap();
        serde::Deserialize::deserialize(toml::de::Deserializer::from(m.doc)).unwrap()
    }

    #[test]
    fn tables_merge_and_arrays_replace() {
        let defaults = "[a]\nx = 1\ny = [1, 2]\n[a.deep]\nz = 'd'\nw = 'd'\n[[list]]\nk = 1\n[[list]]\nk = 2\n";
        let user = "[a]\ny = [3]\n[a.deep]\nz = 'u'\n[[list]]\nk = 9\n";
        let expected: toml::Table =
            toml::from_str("[a]\nx = 1\ny = [3]\n[a.deep]\nz = 'u'\nw = 'd'\n[[list]]\nk = 9\n").unwrap();
        assert_eq!(merged(user, defaults), expected);
        assert_eq!(merged("", defaults), toml::from_str::<toml::Table>(defaults).unwrap());
    }

    #[test]
    fn spans_say_which_document() {
        let user = "[a]\nx = 2\n";
        let m = merge(user, "[a]\nx = 1\ny = 1\n").unwrap();
        let layers = Layers { user };
        let a = m.doc.get_ref().get("a").unwrap().get_ref().as_table().unwrap();
        assert!(layers.in_user(&a.get("x").unwrap().span()).is_some());
        assert!(layers.in_user(&a.get("y").unwrap().span()).is_none());
        assert_eq!(m.named, ["a.x"]);
    }
}
