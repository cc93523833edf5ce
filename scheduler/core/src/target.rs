//! `B_target`: the batch size the model should aim for at its current
//! arrival rate (DESIGN.md §4).
//!
//! With `n(b) = λ·L(b)/b` GPUs kept busy at batch `b`, a request waits up to
//! one batch interval `L(b)/n(b)` to be picked up and then `L(b)` to run, so
//! `L(b)·(1 + 1/n(b))` must fit the budget `T − b·δ_data`. When one GPU is
//! enough (`n ≤ 1`) the wait is the time to collect `b` arrivals, `b/λ`.
//! Before any rate is known the model takes the largest batch that fits half
//! its SLO.

use super::{LatencyTable, Time};

/// Delays that shrink the time budget, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct TargetParams {
    pub slo: Time,
    pub delta_ctrl: Time,
    pub delta_data: Time,
    pub delta_resp: Time,
}

/// The target batch size (≥ 1, ≤ the profile's max batch).
pub fn b_target(lat: &LatencyTable, p: &TargetParams, rate: Option<f64>) -> u32 {
    let max = lat.max_batch();
    let ns = |t: Time| t as f64;
    let fits = |b: u32| -> bool {
        let l = ns(lat.get(b));
        match rate {
            None => l <= ns(p.slo) / 2.0,
            Some(lambda) if lambda <= 0.0 => false,
            Some(lambda) => {
                let budget = ns(p.slo - p.delta_ctrl - p.delta_resp);
                let data = f64::from(b) * ns(p.delta_data);
                let gpus = lambda * l * 1e-9 / f64::from(b);
                if gpus > 1.0 {
                    l * (1.0 + 1.0 / gpus) <= budget - data
                } else {
                    l + f64::from(b) / lambda * 1e9 + data <= budget
                }
            }
        }
    };
    // The condition is not monotone in b for every profile, so take the
    // largest b that satisfies it rather than the first one that fails.
    (1..=max).rev().find(|&b| fits(b)).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resnet() -> LatencyTable {
        // l(b) = 1.082·b + 5.204 ms, as in Symphony's evaluation.
        LatencyTable::from_fn(256, |b| (1_082_000 * i64::from(b)) + 5_204_000)
    }

    fn paper() -> TargetParams {
        TargetParams {
            slo: 100_000_000,
            delta_ctrl: 100_000,
            delta_data: 50_000,
            delta_resp: 2_000_000,
        }
    }

    #[test]
    fn design_table() {
        let lat = resnet();
        let p = paper();
        for (rate, want) in [(50.0, 4), (200.0, 15), (1000.0, 43), (5000.0, 69), (20000.0, 78)] {
            assert_eq!(b_target(&lat, &p, Some(rate)), want, "λ = {rate}");
        }
    }

    #[test]
    fn unknown_rate_takes_half_the_slo() {
        // Largest b with 1.082·b + 5.204 ≤ 50 ms is 41.
        assert_eq!(b_target(&resnet(), &paper(), None), 41);
    }

    #[test]
    fn hopeless_profile_falls_back_to_one() {
        let lat = LatencyTable::from_fn(8, |_| 500_000_000);
        assert_eq!(b_target(&lat, &paper(), Some(1000.0)), 1);
    }
}
