//! Revocation lookup target: `is_revoked` with 1,000,000 entries within 1.5x of the same lookup
//! with 10 entries (it runs on every authenticated request, cache hits included).
//!
//! Two probe patterns per size. `hot` repeats one key: the structure's own cost (hashing, the
//! shard lock, the probe, the key compare), which is what the target is about. `spread` probes
//! the next of 4,096 distinct keys on each call, as requests carrying different jtis would: on
//! the large list every probe then reads lines scattered over ~130 MB.
//!
//! `memory_floor` prices that scatter in the same run: one dependent read of a cached line, the
//! 4,096 lines spread over 1 MiB (a small list's footprint) or over 128 MiB (a million
//! entries'). On a VM the difference is mostly page walks, and any exact list pays it per read
//! once it outgrows the TLB's reach. A miss reads one line of the tables' control bytes (2 MB for
//! a million entries); a hit then also reads the slot holding the key, somewhere in the 128 MB.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;

use criterion::Criterion;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

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

fn memory_floor(c: &mut Criterion) {
    const LINE_WORDS: usize = 64 / std::mem::size_of::<usize>();
    let mut group = c.benchmark_group("memory_floor");
    for mib in [1usize, 128] {
        let lines = (mib << 20) / 64;
        let mut rng = StdRng::seed_from_u64(7);
        let mut picked = rand::seq::index::sample(&mut rng, lines, PROBES).into_vec();
        picked.shuffle(&mut rng);
        // Each picked line holds the word index of the next, closing one cycle, so every read
        // waits for the one before it, as a lookup's probe waits for its hash.
        let mut region = vec![0usize; lines * LINE_WORDS];
        for (i, &line) in picked.iter().enumerate() {
            region[line * LINE_WORDS] = picked[(i + 1) % PROBES] * LINE_WORDS;
        }
        let mut at = picked[0] * LINE_WORDS;
        group.bench_function(format!("{mib}MiB"), |b| {
            b.iter(|| {
                at = region[at];
                at
            })
        });
    }
    group.finish();
}

common::bench_main!(small, large, memory_floor);
