//! The Prometheus text exposition format (0.0.4): families, samples,
//! histograms, label escaping.

use std::fmt::{Display, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics::histogram::Histogram;

pub(super) fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes metric families: `# HELP` / `# TYPE` once, then samples.
pub(super) struct Out(pub(super) String);

impl Out {
    pub(super) fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    /// One sample; `labels` is already `k="v",...` (may be empty).
    pub(super) fn sample(&mut self, name: &str, labels: &str, value: impl Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
        }
    }

    pub(super) fn histogram(&mut self, name: &str, labels: &str, h: &Histogram) {
        let s = h.snapshot();
        for (le, n) in &s.buckets {
            self.sample(
                &format!("{name}_bucket"),
                &format!("{labels},le=\"{le}\""),
                n,
            );
        }
        self.sample(
            &format!("{name}_bucket"),
            &format!("{labels},le=\"+Inf\""),
            s.count,
        );
        self.sample(&format!("{name}_sum"), labels, s.sum);
        self.sample(&format!("{name}_count"), labels, s.count);
    }

    /// A counter family whose samples differ by one label.
    pub(super) fn by_label(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: &[(&str, &AtomicU64)],
    ) {
        self.family(name, "counter", help);
        for (v, n) in values {
            self.sample(name, &format!("{label}=\"{v}\""), n.load(Ordering::Relaxed));
        }
    }
}

pub(super) fn read<K: Clone + Ord, V>(
    reg: &std::sync::RwLock<std::collections::BTreeMap<K, V>>,
) -> std::collections::BTreeMap<K, V>
where
    V: Clone,
{
    reg.read().unwrap_or_else(|p| p.into_inner()).clone()
}
