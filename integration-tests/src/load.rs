//! Load from a `baton loadgen` container, and its accounting.
//!
//! The loadgen runs in the `baton/scheduler` image on the cluster's network, like any client
//! of a deployment would, and prints one JSON summary (`--json`) on stdout. Every request it
//! sent ends in exactly one of ok, rejected (by reason), error or timeout; the tests check that
//! these add up, so a request that got no reply, or was counted twice, fails them.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// Open-loop load on model `m`: `rate` req/s (exponential gaps) for `secs` seconds.
#[derive(Debug, Clone, Copy)]
pub struct LoadSpec {
    pub rate: f64,
    pub secs: f64,
    pub slo_ms: u64,
    pub seed: u64,
}

impl LoadSpec {
    pub fn new(rate: f64, secs: f64) -> Self {
        Self {
            rate,
            secs,
            slo_ms: 100,
            seed: 7,
        }
    }

    /// `baton loadgen` arguments against `nats_url`.
    pub fn args(&self, nats_url: &str, model: &str) -> Vec<String> {
        [
            "loadgen",
            "--nats",
            nats_url,
            "--model",
            model,
            "--rate",
            &self.rate.to_string(),
            "--duration",
            &self.secs.to_string(),
            "--payload-bytes",
            "16",
            "--slo-ms",
            &self.slo_ms.to_string(),
            "--seed",
            &self.seed.to_string(),
            "--json",
        ]
        .map(String::from)
        .to_vec()
    }
}

/// `baton loadgen --json`'s summary (the fields the tests use).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LoadSummary {
    pub sent: u64,
    pub ok: u64,
    /// Ok within the SLO.
    pub good: u64,
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    pub errors: u64,
    #[serde(default)]
    pub error_examples: Vec<String>,
    pub timeouts: u64,
    #[serde(default)]
    pub p99_ms: f64,
}

impl LoadSummary {
    /// Parses the last JSON object in a loadgen's stdout.
    pub fn from_stdout(stdout: &str) -> Result<Self, String> {
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .ok_or_else(|| format!("no JSON summary in the loadgen's output:\n{stdout}"))?;
        serde_json::from_str(line).map_err(|e| format!("bad loadgen summary ({e}): {line}"))
    }

    /// Requests that ended in none of the outcomes (negative: counted twice).
    pub fn unaccounted(&self) -> i64 {
        self.sent as i64 - (self.ok + self.rejected + self.errors + self.timeouts) as i64
    }

    pub fn rejected_for(&self, reason: &str) -> u64 {
        self.rejected_by_reason.get(reason).copied().unwrap_or(0)
    }

    /// The loadgen sent something and its counts add up, by outcome and by rejection reason. The
    /// loadgen keeps only the first reply per request, so duplicates are checked elsewhere
    /// (`Cluster::assert_no_duplicate_replies`).
    pub fn assert_accounted(&self) {
        assert!(self.sent > 0, "the loadgen sent nothing: {self}");
        assert_eq!(self.unaccounted(), 0, "requests unaccounted for: {self}");
        assert_eq!(
            self.rejected,
            self.rejected_by_reason.values().sum::<u64>(),
            "rejections do not add up by reason: {self}"
        );
    }

    /// Rejections only for these reasons.
    pub fn assert_rejections_only(&self, allowed: &[&str]) {
        for reason in self.rejected_by_reason.keys() {
            assert!(
                allowed.contains(&reason.as_str()),
                "unexpected rejection `{reason}`: {self}"
            );
        }
    }

    /// At least `fraction` of the requests were answered ok.
    pub fn assert_ok_at_least(&self, fraction: f64) {
        assert!(
            self.ok as f64 >= fraction * self.sent as f64,
            "fewer than {:.0}% ok: {self}",
            fraction * 100.0
        );
    }
}

impl fmt::Display for LoadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {}: ok {} (good {}), rejected {} {:?}, errors {}, timeouts {}, unaccounted {}; p99 {:.1} ms",
            self.sent,
            self.ok,
            self.good,
            self.rejected,
            self.rejected_by_reason,
            self.errors,
            self.timeouts,
            self.unaccounted(),
            self.p99_ms
        )?;
        if !self.error_examples.is_empty() {
            write!(f, "; errors like {:?}", self.error_examples)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_loadgen_summary_and_counts() {
        let out = "noise\n{\"sent\":10,\"ok\":7,\"good\":7,\"rejected\":2,\"rejected_by_reason\":{\"worker_lost\":2},\
                   \"errors\":0,\"error_examples\":[],\"timeouts\":1,\"duration_s\":1.0,\"achieved_rps\":10.0,\
                   \"goodput_rps\":7.0,\"p50_ms\":3.0,\"p99_ms\":9.0,\"max_ms\":9.5}\n";
        let s = LoadSummary::from_stdout(out).unwrap();
        assert_eq!((s.sent, s.ok, s.rejected_for("worker_lost"), s.timeouts), (10, 7, 2, 1));
        assert_eq!(s.unaccounted(), 0);
        s.assert_accounted();
        let short = LoadSummary { ok: 6, ..s };
        assert_eq!(short.unaccounted(), 1);
        assert!(LoadSummary::from_stdout("nothing").is_err());
    }
}
