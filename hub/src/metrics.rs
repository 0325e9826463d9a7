//! The Prometheus text exposition format, written by hand: each role renders its counters into
//! one [`MetricsText`] at `/metrics` (no registry, no lock on the hot path — the counters are
//! plain atomics read when scraped).

use std::fmt::Write;

/// A `/metrics` body being written: families in order, each with its `HELP` and `TYPE` once.
#[derive(Debug, Default)]
pub struct MetricsText {
    out: String,
}

/// What a family measures: it only grows, or it goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl MetricsText {
    pub fn new() -> MetricsText {
        MetricsText::default()
    }

    /// Starts a family: `name` (with `_total` for counters), its help text and kind.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) -> &mut Self {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.out, "# HELP {name} {}", help.replace('\n', " "));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        self
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// The finished body (`text/plain; version=0.0.4`).
    pub fn finish(self) -> String {
        self.out
    }
}

/// A label value as the format wants it: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_samples_in_the_text_format() {
        let mut text = MetricsText::new();
        text.family("spindle_mesh_links", "Live mesh links.", Kind::Gauge)
            .sample(
                "spindle_mesh_links",
                &[("peer", "edge-1"), ("region", "eu \"west\"")],
                1.0,
            )
            .family(
                "spindle_mesh_events_sent_total",
                "Events sent.",
                Kind::Counter,
            )
            .sample("spindle_mesh_events_sent_total", &[], 42.0);
        assert_eq!(
            text.finish(),
            "# HELP spindle_mesh_links Live mesh links.\n\
             # TYPE spindle_mesh_links gauge\n\
             spindle_mesh_links{peer=\"edge-1\",region=\"eu \\\"west\\\"\"} 1\n\
             # HELP spindle_mesh_events_sent_total Events sent.\n\
             # TYPE spindle_mesh_events_sent_total counter\n\
             spindle_mesh_events_sent_total 42\n"
        );
    }
}
