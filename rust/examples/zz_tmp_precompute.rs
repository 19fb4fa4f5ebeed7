use std::time::Instant;
use cggmp21::key_share::{AuxInfo, KeyShare};
use cggmp21::security_level::SecurityLevel128;
use cggmp21::supported_curves::Secp256k1;
use cggmp21::{ExecutionId, PregeneratedPrimes};
use rand_core::OsRng;
type E = Secp256k1; type L = SecurityLevel128;
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let primes: Vec<PregeneratedPrimes<L>> = doc["primes"].as_array().unwrap().iter().map(|h| {
        let s = h.as_str().unwrap();
        let b: Vec<u8> = (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i+2],16).unwrap()).collect();
        serde_json::from_slice(&b[4 + b[3] as usize..]).unwrap()
    }).collect();
    let n = 3u16; let t = 2u16;
    for (me, crt) in [(false,false),(false,true),(true,true)] {
        let t0 = Instant::now();
        let aux: Vec<AuxInfo<L>> = round_based::sim::run_with_setup(primes[..3].iter().cloned(), |i, party, p| async move {
            cggmp21::aux_info_gen(ExecutionId::new(b"x"), i, n, p).precompute_multiexp_tables(me).precompute_crt(crt).start(&mut OsRng, party).await
        }).unwrap().expect_ok().into_vec();
        let ta = t0.elapsed();
        let sz = serde_json::to_vec(&aux[0]).unwrap().len();
        let inc = round_based::sim::run(n, |i, party| async move { cggmp21::keygen::<E>(ExecutionId::new(b"k"), i, n).set_threshold(t).start(&mut OsRng, party).await }).unwrap().expect_ok().into_vec();
        let shares: Vec<KeyShare<E,L>> = inc.into_iter().zip(aux).map(|(c,a)| KeyShare::from_parts((c,a)).unwrap()).collect();
        let signers = [0u16,1];
        let t1 = Instant::now();
        for _ in 0..3 {
        let _ = round_based::sim::run(2, |i, party| { let s = &shares[i as usize]; async move { cggmp21::signing(ExecutionId::new(b"s"), i, &signers, s).generate_presignature(&mut OsRng, party).await } }).unwrap().expect_ok();
        }
        println!("multiexp={me} crt={crt} aux={ta:?} aux_size={sz} presign={:?}", t1.elapsed()/3);
    }
}
