//! Figures, targets, medians over repetitions, the stdout table and the JSON report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::util::median;

/// A DESIGN §12 target, or none.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Target {
    /// `value / baseline ≥ x`.
    RatioAtLeast(f64),
    /// `value ≥ x`.
    AtLeast(f64),
    /// `value ≤ x`.
    AtMost(f64),
}

impl Target {
    fn met(self, value: Option<f64>, ratio: Option<f64>) -> Option<bool> {
        match self {
            Target::RatioAtLeast(x) => ratio.map(|r| r >= x),
            Target::AtLeast(x) => value.map(|v| v >= x),
            Target::AtMost(x) => value.map(|v| v <= x),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figure {
    pub name: String,
    pub unit: String,
    /// The median over repetitions (the single value when there is one).
    pub value: Option<f64>,
    /// The baseline's figure measured in the same invocation (median).
    pub baseline: Option<f64>,
    /// `value / baseline`: the median of each repetition's own ratio.
    pub ratio: Option<f64>,
    pub target: Option<Target>,
    /// How the target reads in DESIGN §12.
    pub target_text: Option<String>,
    pub met: Option<bool>,
    /// Each repetition's value.
    pub samples: Vec<f64>,
}

impl Figure {
    pub fn new(name: impl Into<String>, unit: &'static str, value: Option<f64>) -> Self {
        Figure {
            name: name.into(),
            unit: unit.into(),
            value,
            baseline: None,
            ratio: None,
            target: None,
            target_text: None,
            met: None,
            samples: value.into_iter().collect(),
        }
    }

    pub fn vs(mut self, baseline: Option<f64>) -> Self {
        self.baseline = baseline;
        self.ratio = match (self.value, baseline) {
            (Some(v), Some(b)) if b > 0.0 => Some(v / b),
            _ => None,
        };
        self
    }

    pub fn target(mut self, t: Target, text: impl Into<String>) -> Self {
        self.target = Some(t);
        self.target_text = Some(text.into());
        self.met = t.met(self.value, self.ratio);
        self
    }

    pub fn note(mut self, text: impl Into<String>) -> Self {
        self.target_text = Some(text.into());
        self
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub backend: String,
    pub scenario: String,
    /// `ok`, `not run: <reason>` or `failed: <error>`.
    pub status: String,
    pub figures: Vec<Figure>,
    /// Counts, errors, CPU split: everything behind the figures, per repetition.
    pub details: Vec<serde_json::Value>,
}

impl ScenarioResult {
    pub fn new(backend: &str, scenario: &str) -> Self {
        ScenarioResult {
            backend: backend.into(),
            scenario: scenario.into(),
            status: "ok".into(),
            figures: Vec::new(),
            details: Vec::new(),
        }
    }

    pub fn not_run(backend: &str, scenario: &str, reason: impl std::fmt::Display) -> Self {
        let mut r = Self::new(backend, scenario);
        r.status = format!("not run: {reason}");
        r
    }

    pub fn failed(backend: &str, scenario: &str, error: impl std::fmt::Display) -> Self {
        let mut r = Self::new(backend, scenario);
        r.status = format!("failed: {error}");
        r
    }
}

/// Merges repetitions: each figure becomes the median of its samples, the ratio the median of
/// the per-repetition ratios, and the target is judged on the medians.
pub fn merge_runs(runs: Vec<Vec<ScenarioResult>>) -> Vec<ScenarioResult> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut by_key: BTreeMap<(String, String), Vec<ScenarioResult>> = BTreeMap::new();
    for run in runs {
        for r in run {
            let key = (r.backend.clone(), r.scenario.clone());
            if !by_key.contains_key(&key) {
                order.push(key.clone());
            }
            by_key.entry(key).or_default().push(r);
        }
    }
    // Baselines first, then SQLite, then PostgreSQL; scenarios in run order.
    let backend_rank = |b: &str| match b {
        "baseline" => 0,
        "sqlite" => 1,
        "postgres" => 2,
        _ => 3,
    };
    let scenario_rank = |s: &str| {
        [
            "unary",
            "publish",
            "ingest",
            "latency",
            "latency-publish",
            "e2e",
            "e2e-publish",
            "memory",
            "backlog",
            "server",
        ]
        .iter()
        .position(|x| *x == s)
        .unwrap_or(usize::MAX)
    };
    order.sort_by_key(|(b, s)| (backend_rank(b), if b == "baseline" { 0 } else { scenario_rank(s) }));
    order
        .into_iter()
        .map(|key| {
            let reps = by_key.remove(&key).unwrap_or_default();
            let ok: Vec<&ScenarioResult> = reps.iter().filter(|r| r.status == "ok").collect();
            let mut out = ScenarioResult::new(&key.0, &key.1);
            out.details = reps.iter().flat_map(|r| r.details.clone()).collect();
            if ok.is_empty() {
                out.status = reps.first().map(|r| r.status.clone()).unwrap_or_default();
                return out;
            }
            if ok.len() < reps.len() {
                let bad = reps.iter().find(|r| r.status != "ok").map(|r| r.status.clone()).unwrap_or_default();
                out.status = format!("ok in {}/{} runs; other: {bad}", ok.len(), reps.len());
            }
            for (i, f) in ok[0].figures.iter().enumerate() {
                let same: Vec<&Figure> =
                    ok.iter().filter_map(|r| r.figures.get(i)).filter(|g| g.name == f.name).collect();
                let samples: Vec<f64> = same.iter().filter_map(|g| g.value).collect();
                let mut m = f.clone();
                m.value = median(samples.clone());
                m.baseline = median(same.iter().filter_map(|g| g.baseline).collect());
                m.ratio = median(same.iter().filter_map(|g| g.ratio).collect());
                m.samples = samples;
                m.met = m.target.and_then(|t| t.met(m.value, m.ratio));
                out.figures.push(m);
            }
            out
        })
        .collect()
}

fn fmt_value(v: Option<f64>, unit: &str) -> String {
    let Some(v) = v else { return "—".into() };
    match unit {
        "/s" | "count" => group_thousands(v.round() as i64),
        "ms" => format!("{v:.2}"),
        "MB" => format!("{v:.1}"),
        "cores" => format!("{v:.2}"),
        "s" => format!("{v:.1}"),
        _ => format!("{v:.3}"),
    }
}

pub fn group_thousands(n: i64) -> String {
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// The table printed on stdout (GitHub-flavoured Markdown, so it can be pasted as is).
pub fn table(results: &[ScenarioResult]) -> String {
    let mut rows: Vec<[String; 8]> = vec![[
        "backend".into(),
        "scenario".into(),
        "figure".into(),
        "value".into(),
        "baseline".into(),
        "ratio".into(),
        "target (DESIGN §12)".into(),
        "met".into(),
    ]];
    for r in results {
        if r.status != "ok" && r.figures.is_empty() {
            rows.push([
                r.backend.clone(),
                r.scenario.clone(),
                r.status.clone(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
            continue;
        }
        for f in &r.figures {
            let unit = match f.unit.as_str() {
                "ms" | "MB" | "cores" | "s" => format!(" ({})", f.unit),
                _ => String::new(),
            };
            rows.push([
                r.backend.clone(),
                if r.status == "ok" { r.scenario.clone() } else { format!("{} ({})", r.scenario, r.status) },
                format!("{}{unit}", f.name),
                fmt_value(f.value, &f.unit),
                fmt_value(f.baseline, &f.unit),
                f.ratio.map(|x| format!("{:.0} %", x * 100.0)).unwrap_or_default(),
                f.target_text.clone().unwrap_or_default(),
                match f.met {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => String::new(),
                },
            ]);
        }
    }
    let widths: Vec<usize> = (0..8).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        out.push('|');
        for (c, cell) in r.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if (3..=5).contains(&c) {
                out.push_str(&format!(" {}{} |", " ".repeat(pad), cell));
            } else {
                out.push_str(&format!(" {}{} |", cell, " ".repeat(pad)));
            }
        }
        out.push('\n');
        if i == 0 {
            out.push('|');
            for (c, w) in widths.iter().enumerate() {
                if (3..=5).contains(&c) {
                    out.push_str(&format!("{}:|", "-".repeat(w + 1)));
                } else {
                    out.push_str(&format!("{}|", "-".repeat(w + 2)));
                }
            }
            out.push('\n');
        }
    }
    out
}
