//! Traces: real arrival times, replayed instead of generated.
//!
//! Generated arrivals are only as bursty as their distribution; real services are burstier in
//! ways no gap distribution captures. [`Trace`] replays real arrival times (the Azure LLM
//! inference traces in the repository's `traces/`, column `TIMESTAMP`), optionally time-scaled
//! to reach a target mean rate while keeping their real burstiness; [`trace_arrivals`] spreads
//! them over models uniformly at random.
//!
//! The `csv` crate reads the file (quoting, a byte-order mark, CRLF and blank lines are its
//! business). Timestamps are calendar times without a zone, `2023-11-16 18:17:03.9799600`;
//! the `time` crate reads them because it is already compiled into the binary (through
//! async-nats), so it costs no new dependency, and one format description states the layout.

use std::path::Path;
use std::sync::LazyLock;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::error::{Parse, ParseFromDescription, TryFromParsed};
use time::format_description::{self, OwnedFormatItem};
use time::PrimitiveDateTime;

use super::arrivals::splitmix64;
use super::WorkloadError;

/// The timestamp layout, for error messages.
const FORM: &str = "`YYYY-MM-DD HH:MM:SS[.fraction]`";

/// `YYYY-MM-DD HH:MM:SS[.f]`, `T` also accepted as the separator, 1 to 9 fractional digits.
static TIMESTAMP: LazyLock<OwnedFormatItem> = LazyLock::new(|| {
    format_description::parse_owned::<2>(
        "[year]-[month padding:none]-[day padding:none][first [ ][T]]\
         [hour padding:none]:[minute padding:none]:[second padding:none][optional [.[subsecond]]]",
    )
    .expect("the timestamp format description is valid")
});

/// Real arrival times, in ns relative to the earliest one, sorted.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Arrival times in ns; `times_ns[0] == 0`, non-decreasing.
    pub times_ns: Vec<i64>,
}

impl Trace {
    /// Reads column `column` of a CSV trace (header row first; timestamps like
    /// `2023-11-16 18:17:03.9799600`, up to 9 fractional digits, no time zone).
    pub fn load_csv(path: &Path, column: &str) -> Result<Trace, WorkloadError> {
        let text = std::fs::read_to_string(path).map_err(|source| WorkloadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        parse_csv(&text, column, path)
    }

    /// Like [`Trace::load_csv`] from text; errors name the path `<string>`.
    pub fn from_csv_str(text: &str, column: &str) -> Result<Trace, WorkloadError> {
        parse_csv(text, column, Path::new("<string>"))
    }

    /// Mean arrival rate in requests per second: `(n − 1) / (last − first)`, i.e. one over the
    /// mean gap. 0 with fewer than two arrivals, infinite if they all share one time.
    pub fn mean_rate(&self) -> f64 {
        let n = self.times_ns.len();
        if n < 2 {
            return 0.0;
        }
        let span_s = (self.times_ns[n - 1] - self.times_ns[0]) as f64 / 1e9;
        (n - 1) as f64 / span_s
    }

    /// The trace time-scaled so its mean rate is `target_rps` (factor `mean_rate / target`),
    /// keeping its burstiness.
    ///
    /// # Panics
    /// If `target_rps` is not finite and positive, or the trace has no finite positive rate.
    pub fn scaled_to_rate(&self, target_rps: f64) -> Trace {
        assert!(
            target_rps.is_finite() && target_rps > 0.0,
            "target rate must be finite and positive, got {target_rps}"
        );
        let rate = self.mean_rate();
        assert!(
            rate.is_finite() && rate > 0.0,
            "a trace needs two distinct arrival times to have a rate (mean rate {rate})"
        );
        self.scaled_by(rate / target_rps)
    }

    /// Every time multiplied by `factor` (> 1 stretches the trace, lowering its rate).
    ///
    /// # Panics
    /// If `factor` is not finite and positive.
    pub fn scaled_by(&self, factor: f64) -> Trace {
        assert!(
            factor.is_finite() && factor > 0.0,
            "time-scale factor must be finite and positive, got {factor}"
        );
        Trace {
            times_ns: self
                .times_ns
                .iter()
                .map(|&t| (t as f64 * factor).round() as i64)
                .collect(),
        }
    }
}

/// Assigns each trace arrival to one of `models` models uniformly at random (seeded), giving
/// `(time ns, model index)` in time order.
///
/// # Panics
/// If `models` is 0.
pub fn trace_arrivals(trace: &Trace, models: usize, seed: u64) -> Vec<(i64, usize)> {
    assert!(models > 0, "trace arrivals need at least one model");
    let mut rng = StdRng::seed_from_u64(splitmix64(seed));
    trace
        .times_ns
        .iter()
        .map(|&t| (t, rng.random_range(0..models)))
        .collect()
}

fn parse_csv(text: &str, column: &str, path: &Path) -> Result<Trace, WorkloadError> {
    let err = |line: u64, problem: String| WorkloadError::Trace {
        path: path.to_path_buf(),
        line: usize::try_from(line).unwrap_or(usize::MAX),
        problem,
    };
    let csv_err = |e: csv::Error| err(e.position().map_or(1, csv::Position::line), e.to_string());

    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let names = reader.headers().map_err(csv_err)?.clone();
    if names.iter().all(str::is_empty) {
        return Err(err(1, "the file is empty; expected a header row".into()));
    }
    let col = names.iter().position(|n| n == column).ok_or_else(|| {
        let names: Vec<&str> = names.iter().collect();
        err(
            1,
            format!("no column `{column}` in the header; columns are {}", names.join(", ")),
        )
    })?;

    let mut absolute: Vec<i128> = Vec::new();
    for row in reader.records() {
        let row = row.map_err(csv_err)?;
        let line = row.position().map_or(0, csv::Position::line);
        let field = row.get(col).ok_or_else(|| {
            err(
                line,
                format!("the row has fewer than {} fields, so no `{column}`", col + 1),
            )
        })?;
        let t = parse_timestamp(field).map_err(|p| err(line, format!("bad timestamp `{field}`: {p}")))?;
        absolute.push(t);
    }
    absolute.sort_unstable();
    let (Some(&first), Some(&last)) = (absolute.first(), absolute.last()) else {
        return Err(err(1, "the trace has no data rows".into()));
    };
    if last == first {
        return Err(err(
            1,
            "all arrivals share one timestamp; a trace needs two distinct times to have a rate".into(),
        ));
    }
    let times_ns = absolute
        .iter()
        .map(|&t| i64::try_from(t - first))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| err(1, "the trace spans more than 292 years".into()))?;
    Ok(Trace { times_ns })
}

/// Parses `YYYY-MM-DD HH:MM:SS[.fffffffff]` (or with `T`) to ns since 1970-01-01 00:00:00.
/// No time zone: only differences matter.
fn parse_timestamp(s: &str) -> Result<i128, String> {
    // `time` reads any number of fractional digits and drops those past the nanosecond; refuse
    // them instead, as a trace finer than we can represent is more likely a wrong column.
    if s.rsplit_once('.').is_some_and(|(_, frac)| frac.len() > 9) {
        return Err(format!("the fraction has more than 9 digits (layout {FORM})"));
    }
    let parsed = PrimitiveDateTime::parse(s, &*TIMESTAMP).map_err(|e| describe(s, &e))?;
    Ok(parsed.assume_utc().unix_timestamp_nanos())
}

/// `time` names the bad component ("hour"); quote its text back too ("hour 25").
fn describe(s: &str, e: &Parse) -> String {
    let component = match e {
        Parse::ParseFromDescription(ParseFromDescription::InvalidComponent(name)) => Some(*name),
        Parse::TryFromParsed(TryFromParsed::ComponentRange(range)) => Some(range.name()),
        _ => None,
    };
    let order = ["year", "month", "day", "hour", "minute", "second", "subsecond"];
    let text = component
        .and_then(|c| order.iter().position(|&o| o == c))
        .and_then(|i| s.split(['-', ' ', 'T', ':', '.']).nth(i));
    match (component, text) {
        (Some(c), Some(text)) => format!("{c} {text} is not valid (layout {FORM})"),
        _ => format!("{e} (layout {FORM})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::testing::{fingerprint, TRACES};
    use std::path::PathBuf;

    fn azure(name: &str) -> Trace {
        let path = PathBuf::from(TRACES).join(name);
        Trace::load_csv(&path, "TIMESTAMP").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn trace_arrivals_are_bit_identical_to_the_published_runs() {
        // Recorded from the hand-written reader this module replaced (`sim/workload.rs`, commit
        // 348c9df): fingerprints of every time, and of the first 10,000 arrivals spread over 4
        // models with seed 1 after scaling to 1000 rps.
        let cases = [
            (
                "azure-llm-2023-conv.csv",
                (19_366, 598164143858851766),
                (10_000, 10660969572609137952),
            ),
            (
                "azure-llm-2023-code.csv",
                (8_819, 4747551986754276791),
                (8_819, 9515665078748839150),
            ),
        ];
        for (file, times, spread) in cases {
            let trace = azure(file);
            assert_eq!(fingerprint(trace.times_ns.iter().map(|&t| (t, 0))), times, "{file}");
            let arrivals = trace_arrivals(&trace.scaled_to_rate(1000.0), 4, 1);
            assert_eq!(fingerprint(arrivals.into_iter().take(10_000)), spread, "{file}");
        }
    }

    #[test]
    fn loads_the_azure_conversation_trace() {
        let trace = azure("azure-llm-2023-conv.csv");
        // 19,366 data rows: the file has no trailing newline, so `wc -l` says 19,366 lines with the header.
        assert_eq!(trace.times_ns.len(), 19_366);
        assert_eq!(trace.times_ns[0], 0);
        assert!(trace.times_ns.windows(2).all(|p| p[0] <= p[1]));
        // Rows 1 and 2: 18:15:46.6805900 and 18:15:50.9951690.
        assert_eq!(trace.times_ns[1], 4_314_579_000);

        let fast = trace.scaled_to_rate(1000.0);
        assert!((fast.mean_rate() - 1000.0).abs() < 1e-3, "{}", fast.mean_rate());
        let slow = trace.scaled_by(2.0);
        assert!((slow.mean_rate() * 2.0 - trace.mean_rate()).abs() < 1e-6);

        let spread = trace_arrivals(&fast, 4, 1);
        assert_eq!(spread.len(), trace.times_ns.len());
        assert_eq!(spread, trace_arrivals(&fast, 4, 1));
        for m in 0..4 {
            let n = spread.iter().filter(|a| a.1 == m).count();
            assert!((4_000..5_700).contains(&n), "model {m}: {n}");
        }
    }

    #[test]
    fn timestamps_cross_midnight_month_and_leap_day() {
        let diff = |a: &str, b: &str| parse_timestamp(b).unwrap() - parse_timestamp(a).unwrap();
        assert_eq!(diff("2023-11-16 23:59:59.9", "2023-11-17 00:00:00.1"), 200_000_000);
        assert_eq!(diff("2023-12-31 23:59:59", "2024-01-01 00:00:00"), 1_000_000_000);
        assert_eq!(
            diff("2024-02-28 00:00:00", "2024-03-01 00:00:00"),
            2 * 86_400_000_000_000
        );
        assert_eq!(
            parse_timestamp("1970-01-02 00:00:00.000000001").unwrap(),
            86_400_000_000_001
        );
        assert!(parse_timestamp("2023-02-29 00:00:00").is_err());
        assert!(parse_timestamp("2023-11-16").is_err());
        assert!(parse_timestamp("2023-11-16 18:17:03.1234567890").is_err());
    }

    #[test]
    fn timestamp_forms_the_old_reader_accepted() {
        let t = |s: &str| parse_timestamp(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(t("2023-01-01T00:00:01.5") - t("2023-01-01 00:00:00"), 1_500_000_000);
        assert_eq!(t("2023-1-1 0:0:1"), t("2023-01-01 00:00:01"));
        for (bad, what) in [
            ("2023-02-30 00:00:00", "day 30"),
            ("2023-13-01 00:00:00", "month 13"),
            ("2023-01-01 00:00:60", "second 60"),
            ("2023-01-01 00:00:01Z", "trailing"),
            ("2023-01-01 00:00:01.", "trailing"),
        ] {
            let e = parse_timestamp(bad).unwrap_err();
            assert!(e.contains(what), "{bad}: {e}");
        }
    }

    #[test]
    fn trace_errors_name_the_line_and_problem() {
        let e = Trace::from_csv_str("TIME,x\n2023-11-16 18:17:03,1\n", "TIMESTAMP")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 1") && e.contains("no column `TIMESTAMP`") && e.contains("TIME, x"),
            "{e}"
        );
        let csv = "TIMESTAMP,x\n2023-11-16 18:17:03,1\n2023-11-16 25:17:03,1\n";
        let e = Trace::from_csv_str(csv, "TIMESTAMP").unwrap_err().to_string();
        assert!(
            e.contains("<string>") && e.contains("line 3") && e.contains("hour 25"),
            "{e}"
        );
        let e = Trace::from_csv_str("TIMESTAMP\n", "TIMESTAMP").unwrap_err().to_string();
        assert!(e.contains("no data rows"), "{e}");
        // Unsorted rows are sorted; times are relative to the earliest.
        let t = Trace::from_csv_str("TIMESTAMP\n2023-01-01 00:00:02\n2023-01-01 00:00:01\n", "TIMESTAMP").unwrap();
        assert_eq!(t.times_ns, vec![0, 1_000_000_000]);
        assert_eq!(t.mean_rate(), 1.0);
    }

    #[test]
    fn csv_details_are_the_csv_crates_business() {
        let two = |csv: &str| Trace::from_csv_str(csv, "TIMESTAMP").map(|t| t.times_ns);
        let want = Some(vec![0, 1_000_000_000]);
        assert_eq!(
            two("\u{feff}TIMESTAMP,x\n2023-01-01 00:00:00,1\n2023-01-01 00:00:01,2\n").ok(),
            want
        );
        assert_eq!(
            two("TIMESTAMP,x\r\n\r\n 2023-01-01 00:00:00 ,1\r\n2023-01-01 00:00:01,2\r\n").ok(),
            want
        );
        assert_eq!(
            two("x,TIMESTAMP\n1,\"2023-01-01 00:00:00\"\n2,2023-01-01 00:00:01,extra\n").ok(),
            want
        );
        let e = two("x,TIMESTAMP\n1,2023-01-01 00:00:00\n2\n").unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("fewer than 2 fields"), "{e}");
        let e = two("").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("empty"), "{e}");
    }
}
