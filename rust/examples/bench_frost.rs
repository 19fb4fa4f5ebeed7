//! Raw cost of the FROST crates, without Python: the baseline for `python -m synod.bench`.
//!
//! Runs the same operations as the Python benchmark (a whole in-process DKG, and one
//! signature = round 1 + round 2 + aggregate + verify) and prints a Markdown table.
//! Also one ROAST signer's round 2 as the crate alone would do it: parse the signing
//! package and the stored nonces, sign, serialize the share.
//! Usage: cargo run --release --example bench_frost [-- SIZES [SIGNER_SIZES]], each like
//! "3/5,11/15,67/100".

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

mod common;
use common::fmt;

use frost_core::keys::{dkg, IdentifierList, KeyPackage, PublicKeyPackage};
use frost_core::round1::SigningNonces;
use frost_core::{Ciphersuite, Identifier, SigningPackage};
use rand_core::OsRng;

fn dkg_all<C: Ciphersuite>(
    t: u16,
    n: u16,
) -> (BTreeMap<Identifier<C>, KeyPackage<C>>, PublicKeyPackage<C>) {
    let ids: Vec<Identifier<C>> = (1..=n).map(|i| Identifier::try_from(i).unwrap()).collect();
    let mut s1 = BTreeMap::new();
    let mut p1 = BTreeMap::new();
    for id in &ids {
        let (s, p) = dkg::part1::<C, _>(*id, n, t, OsRng).unwrap();
        s1.insert(*id, s);
        p1.insert(*id, p);
    }
    // What each participant receives in round 1: everyone else's package.
    let others: BTreeMap<Identifier<C>, BTreeMap<_, _>> = ids
        .iter()
        .map(|id| {
            let rest = p1
                .iter()
                .filter(|(k, _)| *k != id)
                .map(|(k, v)| (*k, v.clone()));
            (*id, rest.collect())
        })
        .collect();
    let mut s2 = BTreeMap::new();
    let mut p2: BTreeMap<Identifier<C>, BTreeMap<Identifier<C>, dkg::round2::Package<C>>> =
        BTreeMap::new();
    for id in &ids {
        let (s, out) = dkg::part2(s1.remove(id).unwrap(), &others[id]).unwrap();
        s2.insert(*id, s);
        for (to, pkg) in out {
            p2.entry(to).or_default().insert(*id, pkg);
        }
    }
    let mut keys = BTreeMap::new();
    let mut public = None;
    for id in &ids {
        let (kp, pkp) = dkg::part3(&s2[id], &others[id], &p2[id]).unwrap();
        keys.insert(*id, kp);
        public = Some(pkp);
    }
    (keys, public.unwrap())
}

fn sign_once<C: Ciphersuite>(
    keys: &BTreeMap<Identifier<C>, KeyPackage<C>>,
    public: &PublicKeyPackage<C>,
    t: u16,
) {
    let msg = [7u8; 32];
    let signers: Vec<_> = keys.keys().take(t as usize).copied().collect();
    let mut nonces = BTreeMap::new();
    let mut commitments = BTreeMap::new();
    for id in &signers {
        let (n, c) = frost_core::round1::commit(keys[id].signing_share(), &mut OsRng);
        nonces.insert(*id, n);
        commitments.insert(*id, c);
    }
    let package = SigningPackage::new(commitments, &msg);
    let mut shares = BTreeMap::new();
    for id in &signers {
        shares.insert(
            *id,
            frost_core::round2::sign(&package, &nonces[id], &keys[id]).unwrap(),
        );
    }
    let sig = frost_core::aggregate(&package, &shares, public).unwrap();
    public.verifying_key().verify(&msg, &sig).unwrap();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn bench<C: Ciphersuite>(name: &str, t: u16, n: u16) {
    let repeats = if n > 50 { 1 } else { 5 };
    let mut dkg_times = Vec::new();
    let mut last = None;
    for _ in 0..repeats {
        let start = Instant::now();
        last = Some(dkg_all::<C>(t, n));
        dkg_times.push(start.elapsed());
    }
    let (keys, public) = last.unwrap();
    let sign_repeats = if n > 50 { 5 } else { 50 };
    let mut sign_times = Vec::new();
    for _ in 0..sign_repeats {
        let start = Instant::now();
        sign_once(&keys, &public, t);
        sign_times.push(start.elapsed());
    }
    println!(
        "| {name} | dkg (all parties) | {t}/{n} | {} | {repeats} |",
        fmt(median(dkg_times))
    );
    println!(
        "| {name} | sign+aggregate+verify | {t}/{n} | {} | {sign_repeats} |",
        fmt(median(sign_times))
    );
}

/// One signer's round 2 from the bytes it receives (keys from the crate's dealer).
fn signer_round2<C: Ciphersuite>(name: &str, t: u16, n: u16) {
    let msg: Vec<u8> = (0u8..32).collect();
    let (shares, public) =
        frost_core::keys::generate_with_dealer::<C, _>(n, t, IdentifierList::Default, &mut OsRng)
            .unwrap();
    let me = Identifier::<C>::try_from(1u16).unwrap();
    let share = &shares[&me];
    let key = KeyPackage::new(
        me,
        *share.signing_share(),
        public.verifying_shares()[&me],
        *public.verifying_key(),
        t,
    );
    let mut commitments = BTreeMap::new();
    let mut mine = None;
    for (id, s) in shares.iter().take(t as usize) {
        let (nonces, c) = frost_core::round1::commit(s.signing_share(), &mut OsRng);
        if *id == me {
            mine = Some(nonces);
        }
        commitments.insert(*id, c);
    }
    let wire = SigningPackage::new(commitments, &msg).serialize().unwrap();
    let stored = mine.unwrap().serialize().unwrap();
    let repeats = if t > 100 { 20 } else { 50 };
    let mut times = Vec::new();
    for _ in 0..repeats {
        let start = Instant::now();
        let package = SigningPackage::<C>::deserialize(&wire).unwrap();
        let nonces = SigningNonces::<C>::deserialize(&stored).unwrap();
        let share = frost_core::round2::sign(&package, &nonces, &key).unwrap();
        std::hint::black_box(share.serialize());
        times.push(start.elapsed());
    }
    println!(
        "| {name} | roast signer round 2 (receive package + sign) | {t}/{n} | {} | {repeats} |",
        fmt(median(times))
    );
}

fn parse_sizes(arg: Option<String>, default: &str) -> Vec<(u16, u16)> {
    arg.unwrap_or_else(|| default.into())
        .split(',')
        .map(|p| {
            let (t, n) = p.split_once('/').expect("SIZES like 3/5,11/15");
            (t.parse().unwrap(), n.parse().unwrap())
        })
        .collect()
}

fn main() {
    let sizes = parse_sizes(std::env::args().nth(1), "3/5,11/15,67/100");
    let signer_sizes = parse_sizes(std::env::args().nth(2), "67/100,800/1000");
    println!("| suite | operation | t/n | median | repeats |");
    println!("|---|---|---|---|---|");
    for (t, n) in &sizes {
        bench::<frost_secp256k1_tr::Secp256K1Sha256TR>("frost-secp256k1-tr", *t, *n);
    }
    for (t, n) in &sizes {
        bench::<frost_ed25519::Ed25519Sha512>("frost-ed25519", *t, *n);
    }
    for (t, n) in &signer_sizes {
        signer_round2::<frost_secp256k1_tr::Secp256K1Sha256TR>("frost-secp256k1-tr", *t, *n);
    }
    for (t, n) in &signer_sizes {
        signer_round2::<frost_ed25519::Ed25519Sha512>("frost-ed25519", *t, *n);
    }
}
