//! Revocation lookup target: `is_revoked` with 1,000,000 entries within 1.5x of the same lookup
//! with 10 entries (it runs on every authenticated request, cache hits included).
//!
//! Two probe patterns per size: `spread` probes the next of 4,096 distinct keys spread over the
//! list on each call (the realistic case: every request carries another jti, so the large list's
//! buckets are mostly out of cache), `hot` repeats one key (the structure's own cost, with the
//! memory hierarchy taken out).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

use portcullis::revocation::RevocationList;

const ISS: &str = "https://id.example.com";
const NOW: i64 = 1_700_000_000;
const PROBES: usize = 4096;

/// UUID-shaped, like most IdPs' `jti`.
fn jti(i: usize) -> String {
    format!("{i:08x}-0000-4000-8000-{i:012x}")
}

fn build(entries: usize) -> RevocationList {
    let list = RevocationList::new();
    for i in 0..entries {
        list.revoke_jti(ISS, &jti(i), Some(NOW + 3600));
    }
    assert_eq!(list.counts(), (entries, 0));
    list
}

fn bench_size(c: &mut Criterion, entries: usize) {
    let list = build(entries);
    let stride = (entries / PROBES).max(1);
    let hits: Vec<String> = (0..PROBES).map(|k| jti((k * stride) % entries)).collect();
    let misses: Vec<String> = (0..PROBES).map(|k| jti(entries + k)).collect();
    assert!(hits
        .iter()
        .all(|j| list.is_revoked(ISS, Some(j), "alice", Some(NOW))));
    assert!(!misses
        .iter()
        .any(|j| list.is_revoked(ISS, Some(j), "alice", Some(NOW))));

    let mut group = c.benchmark_group(format!("is_revoked/{entries}"));
    for (name, probes) in [("hit", &hits), ("miss", &misses)] {
        group.bench_function(format!("{name}/spread"), |b| {
            let mut k = 0;
            b.iter(|| {
                k = (k + 1) % PROBES;
                list.is_revoked(black_box(ISS), Some(probes[k].as_str()), "alice", Some(NOW))
            })
        });
        let one = probes[PROBES / 2].as_str();
        group.bench_function(format!("{name}/hot"), |b| {
            b.iter(|| list.is_revoked(black_box(ISS), Some(black_box(one)), "alice", Some(NOW)))
        });
    }
    group.finish();
}

fn small(c: &mut Criterion) {
    bench_size(c, 10);
}

fn large(c: &mut Criterion) {
    bench_size(c, 1_000_000);
}

fn quick() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = quick();
    targets = small, large
}
criterion_main!(benches);
