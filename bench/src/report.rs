//! The table printed at the end of a run: sections of `figure | value` rows, aligned.

use crate::histogram::Snapshot;
use std::fmt::{self, Write as _};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Table {
    title: String,
    sections: Vec<(String, Vec<(String, String)>)>,
}

impl Table {
    pub fn new(title: impl Into<String>) -> Table {
        Table {
            title: title.into(),
            sections: Vec::new(),
        }
    }

    /// Starts a new section; following rows go into it.
    pub fn section(&mut self, name: impl Into<String>) -> &mut Self {
        self.sections.push((name.into(), Vec::new()));
        self
    }

    pub fn row(&mut self, figure: impl Into<String>, value: impl fmt::Display) -> &mut Self {
        if self.sections.is_empty() {
            self.sections.push((String::new(), Vec::new()));
        }
        if let Some((_, rows)) = self.sections.last_mut() {
            rows.push((figure.into(), value.to_string()));
        }
        self
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows = self.sections.iter().flat_map(|(_, rows)| rows);
        let left = rows
            .clone()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        let right = rows.map(|(_, v)| v.chars().count()).max().unwrap_or(0);
        // Widen the value column if a section name is longer than a row.
        let name = self
            .sections
            .iter()
            .map(|(n, _)| n.chars().count())
            .max()
            .unwrap_or(0);
        let right = right.max(name.saturating_sub(left + 3));
        let rule = format!("+-{}-+-{}-+", "-".repeat(left), "-".repeat(right));
        writeln!(f, "{}", self.title)?;
        writeln!(f, "{rule}")?;
        for (name, rows) in &self.sections {
            if !name.is_empty() {
                writeln!(f, "| {:<width$} |", name, width = left + right + 3)?;
                writeln!(f, "{rule}")?;
            }
            for (figure, value) in rows {
                writeln!(f, "| {figure:<left$} | {value:>right$} |")?;
            }
            writeln!(f, "{rule}")?;
        }
        Ok(())
    }
}

/// `12.34 ms`.
pub fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

/// `p50 / p90 / p99 / max` of a latency snapshot, or `n/a`.
pub fn quantile(snapshot: &Snapshot, q: f64) -> String {
    snapshot.quantile(q).map_or_else(|| "n/a".into(), ms)
}

/// A count with thousands separators: `200,000`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `n` with thousands separators and one decimal for rates: `199,874.2`.
pub fn rate(per_second: f64) -> String {
    if !per_second.is_finite() || per_second < 0.0 {
        return "n/a".into();
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let whole = per_second.trunc() as u64;
    let tenth = ((per_second - per_second.trunc()) * 10.0).round().min(9.0);
    let mut out = count(whole);
    let _ = write!(out, ".{tenth:.0}");
    out
}

/// Bytes as `12.3 KiB` / `4.5 MiB`.
pub fn bytes(n: f64) -> String {
    if n.abs() >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", n / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(200_000), "200,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(rate(199_874.24), "199,874.2");
        assert_eq!(rate(f64::NAN), "n/a");
        assert_eq!(bytes(2048.0), "2.0 KiB");
        assert_eq!(bytes(3.5 * 1024.0 * 1024.0), "3.5 MiB");
        assert_eq!(ms(Duration::from_micros(1500)), "1.50 ms");
    }

    #[test]
    fn table_is_aligned() {
        let mut table = Table::new("t");
        table.section("s").row("a", 1).row("longer", "22");
        table.section("a much longer section name").row("b", 3);
        let text = table.to_string();
        let widths: Vec<usize> = text.lines().skip(1).map(str::len).collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{text}");
        assert!(text.contains("| longer |                22 |"), "{text}");
    }
}
