//! Title and description templates. They are parsed when the rules file is
//! loaded, so an unknown placeholder rejects the file (naming the line)
//! instead of producing a garbled title at 3 a.m.
//!
//! Syntax: `{host}`, `{value}`, `{threshold}`, `{labels.<name>}` (metric
//! rules), `{check_id}` and `{check_value}` (check rules); `{{` and `}}` are
//! literal braces.

use std::collections::BTreeMap;

use super::file::Kind;

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Host,
    Value,
    Threshold,
    Label(String),
    CheckId,
    CheckValue,
}

/// A parsed template; [`Template::source`] gives the text as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

/// Why a template was refused; `offset` is the byte offset in the template.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct TemplateError {
    pub offset: usize,
    pub reason: String,
}

/// What a template is rendered with.
pub(super) struct Context<'a> {
    pub host: &'a str,
    pub value: &'a str,
    pub threshold: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub check_id: &'a str,
}

impl Template {
    /// Parses `text`, accepting only the placeholders a rule of `kind` can
    /// fill.
    pub(super) fn parse(text: &str, kind: Kind) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text.char_indices().peekable();
        while let Some((i, c)) = rest.next() {
            match c {
                '{' if rest.peek().map(|&(_, c)| c) == Some('{') => {
                    rest.next();
                    literal.push('{');
                }
                '}' if rest.peek().map(|&(_, c)| c) == Some('}') => {
                    rest.next();
                    literal.push('}');
                }
                '}' => {
                    return Err(TemplateError {
                        offset: i,
                        reason: "unmatched `}` (write `}}` for a literal brace)".into(),
                    });
                }
                '{' => {
                    let Some(len) = text[i + 1..].find(['}', '{']) else {
                        return Err(TemplateError {
                            offset: i,
                            reason: "unclosed `{` (write `{{` for a literal brace)".into(),
                        });
                    };
                    let name = &text[i + 1..i + 1 + len];
                    if text[i + 1 + len..].starts_with('{') {
                        return Err(TemplateError {
                            offset: i,
                            reason: "unclosed `{` (write `{{` for a literal brace)".into(),
                        });
                    }
                    let part = placeholder(name, kind)
                        .map_err(|reason| TemplateError { offset: i, reason })?;
                    // Skip the name and the closing brace.
                    while let Some(&(j, _)) = rest.peek() {
                        rest.next();
                        if j == i + 1 + len {
                            break;
                        }
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template {
            source: text.to_owned(),
            parts,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// A label the series does not carry renders as `?`: a missing figure is
    /// shown as unknown, never as an empty string that reads like a value.
    pub(super) fn render(&self, ctx: &Context<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Host => out.push_str(ctx.host),
                Part::Value | Part::CheckValue => out.push_str(ctx.value),
                Part::Threshold => out.push_str(ctx.threshold),
                Part::Label(name) => {
                    out.push_str(ctx.labels.get(name).map_or("?", String::as_str));
                }
                Part::CheckId => out.push_str(ctx.check_id),
            }
        }
        out
    }
}

fn placeholder(name: &str, kind: Kind) -> Result<Part, String> {
    let only = |part: Part, allowed: Kind| {
        if kind == allowed {
            Ok(part)
        } else {
            Err(format!(
                "placeholder `{{{name}}}` is only available in {} rules",
                allowed.name()
            ))
        }
    };
    match name {
        "host" => Ok(Part::Host),
        "value" => Ok(Part::Value),
        "threshold" => Ok(Part::Threshold),
        "check_id" => only(Part::CheckId, Kind::Check),
        "check_value" => only(Part::CheckValue, Kind::Check),
        _ => match name.strip_prefix("labels.") {
            Some(label) if !label.is_empty() => only(Part::Label(label.to_owned()), Kind::Metric),
            _ => Err(format!(
                "unknown placeholder `{{{name}}}` (known: {{host}}, {{value}}, {{threshold}}, \
                 {{labels.<name>}}, {{check_id}}, {{check_value}})"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(labels: &'a BTreeMap<String, String>) -> Context<'a> {
        Context {
            host: "web1",
            value: "91.5",
            threshold: ">= 85",
            labels,
            check_id: "disk.smart.health:sda",
        }
    }

    #[test]
    fn placeholders_and_escaped_braces_render() {
        let labels = BTreeMap::from([("mount".to_owned(), "/var".to_owned())]);
        let t = Template::parse(
            "{host}: {labels.mount} {value}% {{{threshold}}}",
            Kind::Metric,
        )
        .unwrap();
        assert_eq!(t.render(&ctx(&labels)), "web1: /var 91.5% {>= 85}");
        let t = Template::parse("{labels.device} é", Kind::Metric).unwrap();
        assert_eq!(t.render(&ctx(&labels)), "? é");
        let t = Template::parse("{check_id} = {check_value}", Kind::Check).unwrap();
        assert_eq!(t.render(&ctx(&labels)), "disk.smart.health:sda = 91.5");
    }

    #[test]
    fn bad_templates_name_the_offset() {
        let e = Template::parse("ab {nope}", Kind::Metric).unwrap_err();
        assert_eq!(e.offset, 3);
        assert!(
            e.reason.contains("unknown placeholder `{nope}`"),
            "{}",
            e.reason
        );
        let e = Template::parse("{check_value}", Kind::Metric).unwrap_err();
        assert!(e.reason.contains("only available in check rules"));
        let e = Template::parse("{labels.mount}", Kind::Check).unwrap_err();
        assert!(e.reason.contains("only available in metric rules"));
        for bad in ["{host", "x }", "{ho{st}", "{labels.}", "{}", "é{"] {
            assert!(Template::parse(bad, Kind::Metric).is_err(), "{bad}");
        }
    }
}
