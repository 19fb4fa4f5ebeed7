//! Raw cost of the `cggmp21` operations synod wraps, without Python or serialization:
//! every party is simulated in this one thread by `round_based::sim`, so a figure is the
//! sum of all parties' work (what `synod.bench.ecdsa` measures through the bindings too).
//!
//! Usage: `cargo run --release --example bench_ecdsa -- ../tests/data/cggmp_primes.json [2/3,3/5]`
//! (the TEST-ONLY primes pool: hex of synod-encoded `PregeneratedPrimes`).

use std::time::{Duration, Instant};

mod common;
use common::fmt;

use cggmp21::key_share::{AuxInfo, IncompleteKeyShare, KeyShare};
use cggmp21::security_level::SecurityLevel128;
use cggmp21::supported_curves::Secp256k1;
use cggmp21::{DataToSign, ExecutionId, PartialSignature, PregeneratedPrimes};
use rand_core::{OsRng, RngCore};

type E = Secp256k1;
type L = SecurityLevel128;

/// Strip the synod header `b"SY" | version | kind len | kind` and return the payload.
fn unwrap_synod(data: &[u8]) -> &[u8] {
    assert!(
        data.len() > 4 && &data[..2] == b"SY",
        "not a synod encoding"
    );
    &data[4 + usize::from(data[3])..]
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn load_primes(path: &str) -> Vec<PregeneratedPrimes<L>> {
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("read primes file")).expect("json");
    doc["primes"]
        .as_array()
        .expect("primes array")
        .iter()
        .map(|h| {
            serde_json::from_slice(unwrap_synod(&hex_decode(h.as_str().expect("hex string"))))
                .expect("primes")
        })
        .collect()
}

fn eid() -> [u8; 32] {
    let mut e = [0u8; 32];
    OsRng.fill_bytes(&mut e);
    e
}

/// Median wall time of `repeats` runs of `f`, and the last result.
fn timed<T>(repeats: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut samples = Vec::with_capacity(repeats);
    let mut last = None;
    for _ in 0..repeats {
        let start = Instant::now();
        last = Some(f());
        samples.push(start.elapsed());
    }
    samples.sort();
    (samples[samples.len() / 2], last.expect("repeats >= 1"))
}

fn aux_info(n: u16, primes: &[PregeneratedPrimes<L>]) -> Vec<AuxInfo<L>> {
    let e = eid();
    let setups = primes[..usize::from(n)].iter().cloned();
    round_based::sim::run_with_setup(setups, |i, party, primes| async move {
        // As the core does: each party precomputes CRT and multi-exponentiation tables.
        cggmp21::aux_info_gen(ExecutionId::new(&e), i, n, primes)
            .precompute_crt(true)
            .precompute_multiexp_tables(true)
            .start(&mut OsRng, party)
            .await
    })
    .expect("simulation")
    .expect_ok()
    .into_vec()
}

fn keygen(t: u16, n: u16) -> Vec<IncompleteKeyShare<E>> {
    let e = eid();
    round_based::sim::run(n, |i, party| async move {
        cggmp21::keygen::<E>(ExecutionId::new(&e), i, n)
            .set_threshold(t)
            .hd_wallet(true)
            .start(&mut OsRng, party)
            .await
    })
    .expect("simulation")
    .expect_ok()
    .into_vec()
}

fn presign(shares: &[KeyShare<E, L>], signers: &[u16]) -> Vec<cggmp21::Presignature<E>> {
    let e = eid();
    round_based::sim::run(signers.len() as u16, |i, party| {
        let share = &shares[usize::from(signers[usize::from(i)])];
        async move {
            cggmp21::signing(ExecutionId::new(&e), i, signers, share)
                .generate_presignature(&mut OsRng, party)
                .await
        }
    })
    .expect("simulation")
    .expect_ok()
    .into_vec()
}

fn sign(shares: &[KeyShare<E, L>], signers: &[u16], data: DataToSign<E>) -> cggmp21::Signature<E> {
    let e = eid();
    round_based::sim::run(signers.len() as u16, |i, party| {
        let share = &shares[usize::from(signers[usize::from(i)])];
        async move {
            cggmp21::signing(ExecutionId::new(&e), i, signers, share)
                .sign(&mut OsRng, party, data)
                .await
        }
    })
    .expect("simulation")
    .expect_ok()
    .expect_eq()
}

/// `"2/3,3/5"` -> `[(2, 3), (3, 5)]`
fn parse_sizes(text: &str) -> Vec<(u16, u16)> {
    text.split(',')
        .map(|part| {
            let (t, n) = part.split_once('/').expect("sizes look like t/n,t/n");
            (t.trim().parse().expect("t"), n.trim().parse().expect("n"))
        })
        .collect()
}

const SUITE: &str = "cggmp21-secp256k1";

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: bench_ecdsa <primes.json> [t/n,t/n]");
    let sizes = parse_sizes(&args.next().unwrap_or_else(|| "2/3,3/5".into()));
    let primes = load_primes(&path);
    // Same labels as `synod.bench.ecdsa`, so the two tables can be joined.
    println!("| suite | operation | t/n | median | repeats |");
    println!("|---|---|---|---|---|");
    let row = |op: &str, t: u16, n: u16, d: Duration, r: usize| {
        println!("| {SUITE} | {op} | {t}/{n} | {} | {r} |", fmt(d))
    };

    for (t, n) in sizes {
        assert!(
            primes.len() >= usize::from(n),
            "need {n} primes in the pool"
        );
        let (d, aux) = timed(1, || aux_info(n, &primes));
        row("aux info (pregenerated primes)", t, n, d, 1);

        let (d, incomplete) = timed(5, || keygen(t, n));
        row("keygen", t, n, d, 5);

        let shares: Vec<KeyShare<E, L>> = incomplete
            .into_iter()
            .zip(aux)
            .map(|(core, aux)| KeyShare::from_parts((core, aux)).expect("matching parts"))
            .collect();
        let signers: Vec<u16> = (0..t).collect();
        let public_key = shares[0].core.shared_public_key;
        let data = DataToSign::digest::<sha2::Sha256>(b"synod bench");

        let (d, presigs) = timed(3, || presign(&shares, &signers));
        row("presignature", t, n, d, 3);

        // Copies of one presignature run, each signing the same message (nothing leaks),
        // so the loop times only the non-interactive step.
        let repeats = 20;
        let mut pool: Vec<_> = (0..repeats).map(|_| presigs.clone()).collect();
        let (d, _) = timed(repeats, || {
            let presigs = pool.pop().expect("one per repeat");
            let partials: Vec<PartialSignature<E>> = presigs
                .into_iter()
                .map(|p| p.issue_partial_signature(data))
                .collect();
            let sig = PartialSignature::combine(&partials).expect("combine");
            sig.verify(&public_key, &data).expect("valid signature");
        });
        row(
            "sign from presignatures (partials+combine+verify)",
            t,
            n,
            d,
            repeats,
        );

        let (d, sig) = timed(3, || sign(&shares, &signers, data));
        sig.verify(&public_key, &data).expect("valid signature");
        row("interactive sign", t, n, d, 3);
    }
}
