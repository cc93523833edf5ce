//! Arrival times: when each model's requests arrive, generated from a seed and merged across
//! models in time order.
//!
//! A model's phases run back to back from t = 0: warmup, then bench, then cooldown, each a list
//! of segments of constant rate. Only requests arriving in the bench window
//! ([`Workload::bench_window`]) count towards goodput; warmup lets meters and queues settle and
//! cooldown keeps the system loaded while the last bench requests finish.
//!
//! Within a segment `[start, end)` of rate `r`, arrivals form a renewal process **started afresh
//! at the segment boundary**; the gap that would cross `end` is discarded and the next segment
//! starts its own process at its start. We chose that over carrying the pending gap across the
//! boundary because it makes every segment independent of the previous one's rate: a long gap
//! drawn at a low rate cannot swallow the start of a high-rate segment.
//!
//! - `const`: arrivals at `start + k/r` for `k = 0, 1, …` — the boundary itself carries the first
//!   arrival, so a segment holds exactly `⌈D·r⌉` requests (`D·r` when that is an integer).
//! - `exp`: gaps exponential with mean `1/r`; the first arrival is at `start + gap`. By
//!   memorylessness this is exactly a Poisson process of rate `r` on the segment.
//! - `gamma:k`: gaps gamma-distributed with shape `k` and mean `1/r` (scale `1/(k·r)`), so the
//!   coefficient of variation is `1/√k`; `k < 1` is burstier than Poisson. First arrival at
//!   `start + gap`.
//! - `r = 0`: no arrivals in the segment.
//!
//! [`arrivals()`] merges all models lazily through a heap holding one pending arrival per model:
//! the scale workload has 30 million arrivals and none of them is ever stored. Each model draws
//! from its own generator seeded from `(seed, model index)`, so adding, removing or reordering
//! *other* models never changes a model's arrival times.
//!
//! The published simulator numbers depend on these exact sequences: a test pins a fingerprint of
//! the first arrivals of every shared workload, so any change to the draws shows up.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp1, Gamma};

use super::{Gap, ModelLoad, Workload};

/// All arrivals of a workload, merged across models in time order (ties by model index),
/// generated lazily. Items are `(arrival time in ns since the start of the run, model index)`.
pub struct Arrivals {
    streams: Vec<ModelStream>,
    /// The next pending arrival of each model that has one.
    heap: BinaryHeap<Reverse<(i64, usize)>>,
}

impl fmt::Debug for Arrivals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arrivals")
            .field("models", &self.streams.len())
            .field("next", &self.heap.peek().map(|r| r.0))
            .finish()
    }
}

/// Generates the arrivals of a workload with `seed` (usually `w.seed`). Same workload and seed →
/// same sequence; model `i`'s arrivals depend only on its own segments, gap, `seed` and `i`.
pub fn arrivals(w: &Workload, seed: u64) -> Arrivals {
    let mut streams: Vec<ModelStream> = w
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| ModelStream::new(m, model_seed(seed, i)))
        .collect();
    let heap = streams
        .iter_mut()
        .enumerate()
        .filter_map(|(i, s)| s.next_ns().map(|t| Reverse((t, i))))
        .collect();
    Arrivals { streams, heap }
}

impl Iterator for Arrivals {
    type Item = (i64, usize);

    fn next(&mut self) -> Option<(i64, usize)> {
        let Reverse((t, model)) = self.heap.pop()?;
        if let Some(next) = self.streams[model].next_ns() {
            self.heap.push(Reverse((next, model)));
        }
        Some((t, model))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.heap.len(), None)
    }
}

/// One model's arrival process, walking its segments in order.
struct ModelStream {
    rng: StdRng,
    gap: Gap,
    /// Gamma(shape, 1) and its shape; a gap at rate r is a draw times `1/(shape·r)`.
    unit_gamma: Option<(Gamma<f64>, f64)>,
    /// `(start_s, end_s, rps)` of warmup, bench and cooldown segments, back to back from 0.
    segments: Vec<(f64, f64, f64)>,
    /// Index of the current segment.
    seg: usize,
    /// `const`: index of the next arrival within the segment.
    k: u64,
    /// `exp`/`gamma`: the previous arrival in the segment, or the segment start.
    t: f64,
}

impl ModelStream {
    fn new(m: &ModelLoad, seed: u64) -> ModelStream {
        let mut start = 0.0;
        let segments = m
            .warmup
            .iter()
            .chain(&m.bench)
            .chain(&m.cooldown)
            .map(|s| {
                let seg = (start, start + s.duration_s, s.rps);
                start += s.duration_s;
                seg
            })
            .collect();
        let unit_gamma = match m.gap {
            // The shape was validated finite and positive when parsed; a hand-built invalid one
            // is a programming error.
            Gap::Gamma { shape } => Some((
                Gamma::new(shape, 1.0).expect("gamma shape must be finite and positive"),
                shape,
            )),
            Gap::Const | Gap::Exp => None,
        };
        ModelStream {
            rng: StdRng::seed_from_u64(seed),
            gap: m.gap,
            unit_gamma,
            segments,
            seg: 0,
            k: 0,
            t: 0.0,
        }
    }

    fn next_ns(&mut self) -> Option<i64> {
        self.next_s().map(|t| (t * 1e9).round() as i64)
    }

    fn next_s(&mut self) -> Option<f64> {
        loop {
            let &(start, end, rps) = self.segments.get(self.seg)?;
            if rps > 0.0 {
                match self.gap {
                    Gap::Const => {
                        // Count by index, not by comparing times, so float rounding can never add
                        // or lose the arrival that lands on `end`.
                        let count = ((end - start) * rps - 1e-9).ceil().max(0.0) as u64;
                        if self.k < count {
                            let t = start + self.k as f64 / rps;
                            self.k += 1;
                            return Some(t);
                        }
                    }
                    Gap::Exp | Gap::Gamma { .. } => {
                        let gap = match &self.unit_gamma {
                            Some((g, shape)) => g.sample(&mut self.rng) / (shape * rps),
                            None => {
                                let e: f64 = self.rng.sample(Exp1);
                                e / rps
                            }
                        };
                        let t = self.t + gap;
                        if t < end {
                            self.t = t;
                            return Some(t);
                        }
                    }
                }
            }
            self.seg += 1;
            self.k = 0;
            self.t = self.segments.get(self.seg).map_or(end, |s| s.0);
        }
    }
}

/// SplitMix64 finaliser: spreads nearby inputs (seed 1 vs 2, model 0 vs 1) over the whole range.
pub(super) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of model `index`'s generator: a function of the run seed and the index only.
fn model_seed(seed: u64, index: usize) -> u64 {
    splitmix64(seed ^ splitmix64(index as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::testing::{fingerprint, load, one_model, seg};

    #[test]
    fn arrivals_are_bit_identical_to_the_published_runs() {
        // Recorded from the hand-written parser this module replaced (`sim/workload.rs`, commit
        // 348c9df): (count, FNV-1a of (time ns, model) pairs) of the first 100,000 arrivals with
        // seed 1 and with the file's own seed.
        let cases = [
            (
                "symphony-example.yaml",
                (18_817, 4286884006645541034),
                (17_957, 10685344232882184583),
            ),
            (
                "resnet-8gpu-poisson.yaml",
                (85_156, 10491494678412645688),
                (85_156, 10491494678412645688),
            ),
            (
                "resnet-8gpu-gamma.yaml",
                (68_004, 1312564738511431714),
                (69_765, 5616974869352470680),
            ),
            (
                "multi-model-64gpu.yaml",
                (100_000, 7730672787607283453),
                (100_000, 12293425143878198271),
            ),
            (
                "scale-1000gpu.yaml",
                (100_000, 10786797191817267156),
                (100_000, 8295527536593969019),
            ),
        ];
        for (file, seed_1, file_seed) in cases {
            let w = load(file);
            assert_eq!(fingerprint(arrivals(&w, 1).take(100_000)), seed_1, "{file}, seed 1");
            assert_eq!(
                fingerprint(arrivals(&w, w.seed).take(100_000)),
                file_seed,
                "{file}, its seed"
            );
        }
    }

    #[test]
    fn const_segments_carry_exactly_rate_times_duration() {
        let w = load("symphony-example.yaml");
        let (start, end) = w.bench_window(0);
        let (start, end) = ((start * 1e9) as i64, (end * 1e9) as i64);
        let m0: Vec<i64> = arrivals(&w, w.seed).filter(|a| a.1 == 0).map(|a| a.0).collect();
        // 5 s × (100 + 200 + 300 + 400 + 500 + 500) rps.
        assert_eq!(m0.len(), 10_000);
        let in_bench = m0.iter().filter(|&&t| t >= start && t < end).count();
        assert_eq!(in_bench, 5 * (200 + 300 + 400 + 500));
        // Exactly 1/r apart within a segment, and the first arrival of a segment on its boundary.
        assert_eq!(&m0[..3], &[0, 10_000_000, 20_000_000]);
        assert_eq!(m0[500], 5_000_000_000);
        assert_eq!(m0[501] - m0[500], 5_000_000);

        // A non-integer count rounds up (ceil of 2.5 s × 3 rps = 7.5).
        let w = one_model(Gap::Const, vec![seg(2.5, 3.0)]);
        assert_eq!(arrivals(&w, 1).count(), 8);
    }

    /// Count within 3 σ, where σ² ≈ D·r·CV² for a renewal process.
    fn assert_count_near(gap: Gap, cv2: f64) {
        let (d, r) = (10.0, 1000.0);
        let w = one_model(gap, vec![seg(d, r)]);
        let n = arrivals(&w, 11).count() as f64;
        let sigma = (d * r * cv2).sqrt();
        assert!(
            (n - d * r).abs() <= 3.0 * sigma,
            "{gap:?}: {n} arrivals, expected {} ± {}",
            d * r,
            3.0 * sigma
        );
    }

    #[test]
    fn random_gaps_have_the_right_rate() {
        assert_count_near(Gap::Exp, 1.0);
        assert_count_near(Gap::Gamma { shape: 0.5 }, 2.0);
        assert_count_near(Gap::Gamma { shape: 4.0 }, 0.25);
    }

    #[test]
    fn arrivals_stay_inside_their_segments_and_zero_rate_is_silent() {
        let w = one_model(Gap::Exp, vec![seg(1.0, 500.0), seg(1.0, 0.0), seg(1.0, 500.0)]);
        let times: Vec<i64> = arrivals(&w, 3).map(|a| a.0).collect();
        assert!(times.iter().all(|&t| !(1_000_000_000..2_000_000_000).contains(&t)));
        assert!(times.iter().any(|&t| t >= 2_000_000_000));
        assert!(times.iter().all(|&t| t < 3_000_000_000));
    }

    #[test]
    fn same_seed_same_arrivals_different_seed_different() {
        let w = load("symphony-example.yaml");
        let a: Vec<_> = arrivals(&w, 5).collect();
        let b: Vec<_> = arrivals(&w, 5).collect();
        let c: Vec<_> = arrivals(&w, 6).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn merged_arrivals_are_in_time_then_model_order() {
        let w = load("multi-model-64gpu.yaml").scaled(0.1);
        let all: Vec<_> = arrivals(&w, w.seed).collect();
        assert!(all.windows(2).all(|p| p[0] <= p[1]));
        let models: std::collections::BTreeSet<usize> = all.iter().map(|a| a.1).collect();
        assert_eq!(models.len(), 16);
    }

    #[test]
    fn scale_workload_is_generated_lazily() {
        let w = load("scale-1000gpu.yaml");
        let mut it = arrivals(&w, w.seed);
        assert_eq!(it.size_hint().0, 100);
        let first: Vec<_> = it.by_ref().take(10_000).collect();
        assert!(first.windows(2).all(|p| p[0] <= p[1]));
    }

    #[test]
    fn adding_a_model_does_not_change_the_others() {
        let one = one_model(Gap::Gamma { shape: 0.5 }, vec![seg(2.0, 300.0)]);
        let mut two = one.clone();
        let mut other = two.models[0].clone();
        other.name = "other".into();
        other.gap = Gap::Exp;
        two.models.push(other);
        let alone: Vec<i64> = arrivals(&one, 9).map(|a| a.0).collect();
        let shared: Vec<i64> = arrivals(&two, 9).filter(|a| a.1 == 0).map(|a| a.0).collect();
        assert_eq!(alone, shared);
    }

    #[test]
    fn scaled_doubles_counts() {
        let w = load("symphony-example.yaml");
        let count0 = |w: &Workload| arrivals(w, 1).filter(|a| a.1 == 0).count();
        assert_eq!(count0(&w), 10_000);
        let doubled = w.scaled(2.0);
        assert_eq!(count0(&doubled), 20_000);
        assert_eq!(doubled.models[1].bench[1], seg(12.0, 600.0));
        assert_eq!(doubled.duration(), w.duration());

        let w = one_model(Gap::Exp, vec![seg(10.0, 1000.0)]);
        let n1 = arrivals(&w, 2).count() as f64;
        let n2 = arrivals(&w.scaled(2.0), 2).count() as f64;
        assert!((n2 / n1 - 2.0).abs() < 0.1, "{n1} → {n2}");
    }
}
