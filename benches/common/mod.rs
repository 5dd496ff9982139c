//! Criterion settings every bench target shares, so a change to how long benches run is made
//! once. Included by each target with `mod common;` (a `benches/` subdirectory without a
//! `main.rs` is not a target of its own).

use std::time::Duration;

use criterion::Criterion;

/// Warm-up and measurement times, alike for every target so their numbers compare.
pub fn quick() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

/// The bench target's `main`, running `targets` with [`quick`].
macro_rules! bench_main {
    ($($target:path),+ $(,)?) => {
        criterion::criterion_group! {
            name = benches;
            config = $crate::common::quick();
            targets = $($target),+
        }
        criterion::criterion_main!(benches);
    };
}
pub(crate) use bench_main;
