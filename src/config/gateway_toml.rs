//! The TensorZero gateway's `tensorzero.toml`, read and edited without
//! losing anything: comments, key order, table layout and number formats of
//! every key servetune does not set stay byte for byte (`toml_edit` keeps the
//! document as written; `toml`, which the project reads its own files with,
//! would rewrite it). Keys are dotted paths (`gateway.debug`,
//! `models.gpt2.timeouts.non_streaming.total_ms`); a set creates the tables
//! on its path as dotted-key-free `[a.b]` headers only where none exist.

use std::path::Path;

use toml_edit::{DocumentMut, Item, Table};

use super::error::ConfigError;

/// A parsed `tensorzero.toml`.
#[derive(Debug, Clone)]
pub struct GatewayToml {
    document: DocumentMut,
}

/// A value a key is set to.
#[derive(Debug, Clone, PartialEq)]
pub enum TomlScalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl From<TomlScalar> for toml_edit::Value {
    fn from(scalar: TomlScalar) -> Self {
        match scalar {
            TomlScalar::Bool(b) => b.into(),
            TomlScalar::Int(i) => i.into(),
            TomlScalar::Float(x) => x.into(),
            TomlScalar::Text(t) => t.into(),
        }
    }
}

impl GatewayToml {
    /// Parses `bytes`; an error names `path` and the line.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, ConfigError> {
        let invalid = |line: usize, reason: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
            invalid(line, "not UTF-8".into())
        })?;
        let document: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
            let line = e.span().map_or(1, |span| text[..span.start].matches('\n').count() + 1);
            invalid(line, e.message().trim_end().to_string())
        })?;
        Ok(Self { document })
    }

    /// The value at a dotted `key` as text (strings unquoted), if set.
    pub fn get(&self, key: &str) -> Option<String> {
        let mut item = self.document.as_item();
        for part in key.split('.') {
            item = item.get(part)?;
        }
        let value = item.as_value()?;
        Some(match value {
            toml_edit::Value::String(s) => s.value().clone(),
            other => other.clone().decorated("", "").to_string(),
        })
    }

    /// Sets the value at a dotted `key`, keeping the decoration (comments,
    /// spacing) of a value it replaces.
    pub fn set(&mut self, key: &str, value: TomlScalar) -> Result<(), String> {
        let parts: Vec<&str> = key.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!("'{key}' is not a dotted key"));
        }
        let (last, tables) = parts.split_last().expect("split gives one part at least");
        let mut table: &mut Table = self.document.as_table_mut();
        let mut walked = Vec::new();
        for part in tables {
            walked.push(*part);
            let entry = table.entry(part).or_insert_with(|| {
                let mut new = Table::new();
                new.set_implicit(true);
                Item::Table(new)
            });
            if let Some(inline) = entry.as_inline_table_mut() {
                // `a = { b = 1 }`: edit inside the inline table.
                let rest = parts[walked.len()..].join(".");
                return set_in_inline(inline, &rest, value).map_err(|e| format!("{key}: {e}"));
            }
            table = entry
                .as_table_mut()
                .ok_or_else(|| format!("{key}: '{}' is a value, not a table", walked.join(".")))?;
        }
        let mut new: toml_edit::Value = value.into();
        match table.get_mut(last) {
            Some(Item::Value(old)) => {
                let decor = old.decor().clone();
                *new.decor_mut() = decor;
                *old = new;
            }
            Some(Item::Table(_)) | Some(Item::ArrayOfTables(_)) => {
                return Err(format!("{key} is a table, not a value"));
            }
            _ => {
                table.insert(last, Item::Value(new));
            }
        }
        Ok(())
    }

    /// The document as text.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.document.to_string().into_bytes()
    }

    /// Whether two configs say the same (layout and comments aside).
    pub fn same_as(&self, other: &GatewayToml) -> bool {
        let plain = |doc: &DocumentMut| doc.to_string().parse::<toml::Table>().ok();
        match (plain(&self.document), plain(&other.document)) {
            (Some(a), Some(b)) => a == b,
            _ => self.document.to_string() == other.document.to_string(),
        }
    }
}

fn set_in_inline(table: &mut toml_edit::InlineTable, key: &str, value: TomlScalar) -> Result<(), String> {
    let (first, rest) = match key.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (key, None),
    };
    match rest {
        None => {
            table.insert(first, value.into());
            Ok(())
        }
        Some(rest) => {
            let inner = table
                .entry(first)
                .or_insert_with(|| toml_edit::Value::InlineTable(toml_edit::InlineTable::new()));
            match inner.as_inline_table_mut() {
                Some(inner) => set_in_inline(inner, rest, value),
                None => Err(format!("'{first}' is a value, not a table")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "# The gateway.\n[gateway]\nobservability.enabled = false   # no database\n\n\
                          [models.gpt2]\nrouting = [\"torchserve\"]\n\n\
                          [models.gpt2.providers.torchserve]\ntype = \"openai\"\ntimeout = { total_ms = 5_000 }\n";

    fn parse(text: &str) -> GatewayToml {
        GatewayToml::parse(text.as_bytes(), Path::new("tensorzero.toml")).unwrap()
    }

    #[test]
    fn an_untouched_config_round_trips_byte_for_byte() {
        assert_eq!(parse(CONFIG).to_bytes(), CONFIG.as_bytes());
    }

    #[test]
    fn the_example_gateway_config_round_trips_byte_for_byte() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/stack/tensorzero.toml");
        let bytes = std::fs::read(&path).unwrap();
        let mut config = GatewayToml::parse(&bytes, &path).unwrap();
        assert_eq!(config.to_bytes(), bytes);
        config.set("gateway.debug", TomlScalar::Bool(true)).unwrap();
        let edited = String::from_utf8(config.to_bytes()).unwrap();
        let original = String::from_utf8(bytes).unwrap();
        assert_eq!(
            edited.replacen("debug = true\n", "", 1),
            original,
            "one line added, every other byte kept"
        );
    }

    #[test]
    fn a_set_changes_its_value_and_nothing_else() {
        let mut config = parse(CONFIG);
        config
            .set("gateway.observability.enabled", TomlScalar::Bool(true))
            .unwrap();
        let text = String::from_utf8(config.to_bytes()).unwrap();
        assert_eq!(
            text,
            CONFIG.replace("enabled = false", "enabled = true"),
            "the comment after the value stays"
        );
        config.set("gateway.debug", TomlScalar::Bool(true)).unwrap();
        config
            .set("models.gpt2.timeouts.non_streaming.total_ms", TomlScalar::Int(2000))
            .unwrap();
        config
            .set("models.gpt2.providers.torchserve.timeout.total_ms", TomlScalar::Int(9))
            .unwrap();
        let text = String::from_utf8(config.to_bytes()).unwrap();
        assert!(text.starts_with("# The gateway.\n[gateway]\n"), "{text}");
        assert!(text.contains("timeout = { total_ms = 9 }"), "{text}");
        let again = parse(&text);
        assert_eq!(again.get("gateway.debug").as_deref(), Some("true"));
        assert_eq!(
            again.get("models.gpt2.timeouts.non_streaming.total_ms").as_deref(),
            Some("2000")
        );
        assert_eq!(
            again.get("models.gpt2.providers.torchserve.type").as_deref(),
            Some("openai")
        );
        assert_eq!(again.get("models.gpt2.routing").as_deref(), Some("[\"torchserve\"]"));
        assert!(again.get("gateway.nothing").is_none());
    }

    #[test]
    fn configs_compare_by_value() {
        let a = parse(CONFIG);
        let relaid = parse(&CONFIG.replace("# The gateway.\n", "").replace("5_000", "5000"));
        assert!(a.same_as(&relaid));
        let mut changed = a.clone();
        changed.set("gateway.debug", TomlScalar::Bool(false)).unwrap();
        assert!(!a.same_as(&changed));
    }

    #[test]
    fn bad_configs_and_keys_are_refused_with_the_place() {
        let e = GatewayToml::parse(b"[gateway]\ndebug = \n", Path::new("tz.toml")).unwrap_err();
        assert!(e.to_string().starts_with("tz.toml:2:"), "{e}");
        let mut config = parse(CONFIG);
        assert!(config
            .set("models", TomlScalar::Int(1))
            .unwrap_err()
            .contains("a table"));
        assert!(config
            .set("models.gpt2.routing.x", TomlScalar::Int(1))
            .unwrap_err()
            .contains("not a table"));
        assert!(config.set("a..b", TomlScalar::Int(1)).is_err());
        assert_eq!(config.to_bytes(), CONFIG.as_bytes(), "a refused set changes nothing");
    }
}
