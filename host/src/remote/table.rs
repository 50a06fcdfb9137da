//! Aligned text tables for the client commands' human output.
//!
//! Cells come from the host's answers, and so partly from guests (outputs,
//! custom status, event names): control characters are escaped, so a cell
//! can neither break the alignment nor send escape sequences to the
//! terminal. Widths count characters, which is right for the ids, names,
//! times and JSON these tables hold.

use serde_json::Value;

/// Columns are separated by this many spaces.
const GAP: usize = 2;

/// Rows of cells under optional headers; render with [`Table::render`].
#[derive(Debug, Default)]
pub(crate) struct Table {
    headers: Option<Vec<String>>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with a header row.
    pub(crate) fn new(headers: &[&str]) -> Self {
        Self {
            headers: Some(headers.iter().map(|h| (*h).to_owned()).collect()),
            rows: Vec::new(),
        }
    }

    /// A two-column table of `label  value` lines, without headers.
    pub(crate) fn fields() -> Self {
        Self::default()
    }

    pub(crate) fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.rows
            .push(cells.into_iter().map(|c| clean(c.as_ref())).collect());
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines, each column as wide as its widest cell; the last
    /// column is not padded, so lines carry no trailing spaces.
    pub(crate) fn render(&self) -> String {
        let lines: Vec<&Vec<String>> = self.headers.iter().chain(&self.rows).collect();
        let columns = lines.iter().map(|l| l.len()).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                lines
                    .iter()
                    .filter_map(|l| l.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for line in lines {
            let mut text = String::new();
            for (c, cell) in line.iter().enumerate() {
                text.push_str(cell);
                if c + 1 < line.len() {
                    let pad = widths[c] - cell.chars().count() + GAP;
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A cell's text with control characters escaped (`\n`, `\t`, `\u{1b}`):
/// what a host sends never moves the cursor or styles the terminal.
pub(crate) fn clean(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| match c {
            '\n' => "\\n".to_owned(),
            '\r' => "\\r".to_owned(),
            '\t' => "\\t".to_owned(),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// A JSON value as one line: strings bare, everything else compact JSON,
/// absent as empty.
pub(crate) fn plain(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A JSON value as compact JSON (strings quoted), for inputs and outputs
/// whose type matters; absent as empty.
pub(crate) fn json(value: Option<&Value>) -> String {
    value.map(Value::to_string).unwrap_or_default()
}

/// `text` cut to `max` characters, marking the cut with `…`.
pub(crate) fn truncated(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_align_without_trailing_spaces() {
        let mut table = Table::new(&["ID", "STATUS"]);
        table.row(["a", "Completed"]);
        table.row(["longer-id", ""]);
        assert_eq!(
            table.render(),
            "ID         STATUS\na          Completed\nlonger-id\n"
        );
    }

    #[test]
    fn guest_text_cannot_break_lines_or_reach_the_terminal() {
        let mut table = Table::fields();
        table.row(["Output", "two\nlines \u{1b}[31mred"]);
        assert_eq!(table.render(), "Output  two\\nlines \\u{1b}[31mred\n");
    }

    #[test]
    fn values_render_as_one_line() {
        assert_eq!(plain(&json!("x")), "x");
        assert_eq!(plain(&json!(null)), "");
        assert_eq!(plain(&json!({"a": [1, 2]})), r#"{"a":[1,2]}"#);
        assert_eq!(json(Some(&json!("x"))), r#""x""#);
        assert_eq!(json(None), "");
        assert_eq!(truncated("abcdef", 4), "abc…");
        assert_eq!(truncated("abc", 4), "abc");
    }
}
