//! FROST bindings for the ZF ciphersuites `frost-secp256k1-tr` (BIP340/Taproot)
//! and `frost-ed25519`.
//!
//! Each Python-facing function takes the ciphersuite name first and dispatches
//! to one generic implementation. Objects cross the boundary as the crates' own
//! serializations; participants are `u16` identifiers (1..=65535).
//!
//! The only protocol written here is resharing (new committee, new threshold,
//! same group key), which the released crates lack: every old signer Shamir
//! sub-shares its Lagrange-weighted share with the crate's own `split`, and
//! every new signer checks each sub-share with the crate's own VSS verification
//! and the old verification shares before summing.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};

use frost_core::keys::{
    self, dkg, refresh, repairable, IdentifierList, KeyPackage, PublicKeyPackage, SecretShare,
    SigningShare, VerifiableSecretSharingCommitment, VerifyingShare,
};
use frost_core::round1::{NonceCommitment, SigningCommitments, SigningNonces};
use frost_core::round2::SignatureShare;
use frost_core::{
    CheaterDetection, Ciphersuite, Element, Error, Field, Group, Identifier, Signature, SigningKey,
    SigningPackage, VerifyingKey,
};
use frost_secp256k1_tr::keys::Tweak;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rand_core::OsRng;

use crate::core_err;

type Tr = frost_secp256k1_tr::Secp256K1Sha256TR;
type Ed = frost_ed25519::Ed25519Sha512;

type Bytes = Vec<u8>;
type IdMap = BTreeMap<u16, Bytes>;
/// Arguments from Python: bytes copied in one step (see `crate::Raw`).
type In = crate::Raw;
type InMap = BTreeMap<u16, In>;

/// What differs between the two ciphersuites: only the BIP341 tweak.
trait Suite: Ciphersuite {
    fn tweak_key_package(
        kp: KeyPackage<Self>,
        merkle_root: Option<&[u8]>,
    ) -> PyResult<KeyPackage<Self>>;
    fn tweak_public_package(
        pkp: PublicKeyPackage<Self>,
        merkle_root: Option<&[u8]>,
    ) -> PyResult<PublicKeyPackage<Self>>;
}

impl Suite for Tr {
    fn tweak_key_package(
        kp: KeyPackage<Self>,
        merkle_root: Option<&[u8]>,
    ) -> PyResult<KeyPackage<Self>> {
        Ok(kp.tweak(merkle_root))
    }
    fn tweak_public_package(
        pkp: PublicKeyPackage<Self>,
        merkle_root: Option<&[u8]>,
    ) -> PyResult<PublicKeyPackage<Self>> {
        Ok(pkp.tweak(merkle_root))
    }
}

impl Suite for Ed {
    fn tweak_key_package(_: KeyPackage<Self>, _: Option<&[u8]>) -> PyResult<KeyPackage<Self>> {
        Err(no_tweak())
    }
    fn tweak_public_package(
        _: PublicKeyPackage<Self>,
        _: Option<&[u8]>,
    ) -> PyResult<PublicKeyPackage<Self>> {
        Err(no_tweak())
    }
}

fn no_tweak() -> PyErr {
    core_err(
        "invalid_parameters",
        vec![],
        "the Taproot tweak applies only to secp256k1-tr",
    )
}

macro_rules! dispatch {
    ($suite:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        crate::guarded(|| match $suite {
            "secp256k1-tr" => $f::<Tr>($($arg),*),
            "ed25519" => $f::<Ed>($($arg),*),
            other => Err(core_err(
                "invalid_parameters",
                vec![],
                format!("unknown ciphersuite {other:?} (expected \"secp256k1-tr\" or \"ed25519\")"),
            )),
        })
    };
}

// ---------------------------------------------------------------------------
// Identifiers, errors, (de)serialization helpers
// ---------------------------------------------------------------------------

fn ident<C: Ciphersuite>(id: u16) -> PyResult<Identifier<C>> {
    Identifier::<C>::try_from(id).map_err(|_| {
        core_err(
            "invalid_parameters",
            vec![],
            format!("invalid identifier {id}"),
        )
    })
}

/// The `u16` a crate identifier was made from, or `None` for any other scalar. Constant
/// time: read the scalar's little-endian bytes (the order the crate itself compares
/// identifiers in) instead of searching the 65,535 candidates.
fn id_of<C: Ciphersuite>(id: &Identifier<C>) -> Option<u16> {
    let le = <<C::Group as Group>::Field>::little_endian_serialize(&id.to_scalar());
    let bytes = le.as_ref();
    if bytes.len() < 2 || bytes[2..].iter().any(|&b| b != 0) {
        return None;
    }
    let v = u16::from_le_bytes([bytes[0], bytes[1]]);
    (v != 0).then_some(v)
}

/// `id_of`, or a decode error naming the object it came from.
fn id_or_err<C: Ciphersuite>(id: &Identifier<C>, what: &str) -> PyResult<u16> {
    id_of(id).ok_or_else(|| {
        core_err(
            "decode",
            vec![],
            format!("{what}: identifier outside 1..=65535"),
        )
    })
}

/// Translate a crate error into a `CoreError`, naming culprits by `u16` identifier.
fn frost_err<C: Ciphersuite>(e: Error<C>) -> PyErr {
    let culprits: Vec<u16> = e.culprits().iter().filter_map(id_of).collect();
    let kind = match &e {
        Error::InvalidProofOfKnowledge { .. } | Error::InvalidSecretShare { .. } => {
            "invalid_package"
        }
        Error::InvalidSignatureShare { .. } => "invalid_share",
        Error::InvalidSignature => "invalid_signature",
        Error::MalformedSigningKey
        | Error::MalformedVerifyingKey
        | Error::MalformedSignature
        | Error::MalformedIdentifier
        | Error::FieldError(_)
        | Error::GroupError(_)
        | Error::DeserializationError
        | Error::SerializationError
        | Error::InvalidCoefficients => "decode",
        _ => "invalid_parameters",
    };
    core_err(kind, culprits, e.to_string())
}

/// Deserialize every value of an identifier-keyed map, naming the sender of undecodable bytes.
fn decode_map<C: Ciphersuite, T>(
    m: &InMap,
    what: &str,
    de: impl Fn(&[u8]) -> Result<T, Error<C>>,
) -> PyResult<BTreeMap<Identifier<C>, T>> {
    let mut out = BTreeMap::new();
    for (id, bytes) in m {
        let v = de(bytes)
            .map_err(|e| core_err("decode", vec![*id], format!("{what} from {id}: {e}")))?;
        out.insert(ident::<C>(*id)?, v);
    }
    Ok(out)
}

fn encode_map<C: Ciphersuite, T>(
    m: &BTreeMap<Identifier<C>, T>,
    ser: impl Fn(&T) -> Result<Bytes, Error<C>>,
) -> PyResult<IdMap> {
    let mut out = BTreeMap::new();
    for (id, v) in m {
        out.insert(
            id_or_err(id, "identifier")?,
            ser(v).map_err(|e| frost_err(e))?,
        );
    }
    Ok(out)
}

fn de<T, C: Ciphersuite>(
    bytes: &[u8],
    what: &str,
    f: impl Fn(&[u8]) -> Result<T, Error<C>>,
) -> PyResult<T> {
    f(bytes).map_err(|e| core_err("decode", vec![], format!("{what}: {e}")))
}

fn ser<C: Ciphersuite>(r: Result<Bytes, Error<C>>) -> PyResult<Bytes> {
    r.map_err(|e| frost_err(e))
}

fn py_bytes(py: Python<'_>, b: Bytes) -> Py<PyBytes> {
    PyBytes::new(py, &b).unbind()
}

fn scalar_bytes<C: Ciphersuite>(s: &SigningShare<C>) -> Bytes {
    s.serialize()
}

// ---------------------------------------------------------------------------
// Distributed key generation (RFC 9591 appendix C, Pedersen DKG with PoK)
// ---------------------------------------------------------------------------

/// Which flavour of the Pedersen DKG: a fresh key, or a refresh (a DKG of zero whose result
/// is added to the current shares). Both have the same round-1 and round-2 steps in the crate.
#[derive(Clone, Copy)]
enum Flavour {
    Keygen,
    Refresh,
}

fn dkg_part1_g<C: Suite>(
    flavour: Flavour,
    id: u16,
    max_signers: u16,
    min_signers: u16,
) -> PyResult<(Bytes, Bytes)> {
    let ident = ident::<C>(id)?;
    let result = match flavour {
        Flavour::Keygen => dkg::part1::<C, _>(ident, max_signers, min_signers, OsRng),
        Flavour::Refresh => {
            refresh::refresh_dkg_part1::<C, _>(ident, max_signers, min_signers, OsRng)
        }
    };
    let (secret, package) = result.map_err(|e| frost_err(e))?;
    Ok((ser(secret.serialize())?, ser(package.serialize())?))
}

fn dkg_part2_g<C: Suite>(
    flavour: Flavour,
    secret: In,
    round1: HMap<'_>,
) -> PyResult<(Bytes, IdMap)> {
    let secret = de(
        &secret,
        "round-1 secret package",
        dkg::round1::SecretPackage::<C>::deserialize,
    )?;
    let r1 = handle_map::<C, dkg::round1::Package<C>>(&round1, "round-1 package")?;
    let result = match flavour {
        Flavour::Keygen => dkg::part2(secret, &r1),
        Flavour::Refresh => refresh::refresh_dkg_part2(secret, &r1),
    };
    let (secret2, out) = result.map_err(|e| frost_err(e))?;
    Ok((
        ser(secret2.serialize())?,
        encode_map(&out, |p| p.serialize())?,
    ))
}

/// The inputs of a DKG's (or refresh's) last step, decoded, with the identifiers seen.
type Round2Inputs<C> = (
    dkg::round2::SecretPackage<C>,
    BTreeMap<Identifier<C>, dkg::round1::Package<C>>,
    BTreeMap<Identifier<C>, dkg::round2::Package<C>>,
);

fn decode_part3<C: Suite>(
    secret: &[u8],
    round1: &HMap<'_>,
    round2: &HMap<'_>,
) -> PyResult<Round2Inputs<C>> {
    let secret = de(
        secret,
        "round-2 secret package",
        dkg::round2::SecretPackage::<C>::deserialize,
    )?;
    let r1 = handle_map::<C, dkg::round1::Package<C>>(round1, "round-1 package")?;
    let r2 = handle_map::<C, dkg::round2::Package<C>>(round2, "round-2 package")?;
    Ok((secret, r1, r2))
}

fn dkg_part3_g<C: Suite>(
    py: Python<'_>,
    secret: In,
    round1: HMap<'_>,
    round2: HMap<'_>,
    crate_checks: bool,
) -> PyResult<(Bytes, Bytes)> {
    let (secret, r1, r2) = decode_part3::<C>(&secret, &round1, &round2)?;
    // Seconds of CPU for a large committee: let the member's other threads run meanwhile.
    py.allow_threads(|| {
        let (kp, pkp) = if crate_checks {
            dkg::part3(&secret, &r1, &r2)
        } else {
            part3_horner(&secret, &r1, &r2)
        }
        .map_err(|e| frost_err(e))?;
        Ok((ser(kp.serialize())?, ser(pkp.serialize())?))
    })
}

/// `p · k` for a public point and a small public scalar: vartime double-and-add.
fn mul_small<C: Ciphersuite>(p: Element<C>, k: u16) -> Element<C> {
    let mut acc = <C::Group>::identity();
    for bit in (0..u16::BITS - k.leading_zeros()).rev() {
        acc = acc + acc;
        if (k >> bit) & 1 == 1 {
            acc = acc + p;
        }
    }
    acc
}

/// Σ_k x^k·C_k by Horner's rule: `evaluate_vss` of the crate, computed with one small
/// multiplication per coefficient (about 15 group additions for x ≤ 1000) instead of a
/// full scalar multiplication; for an identifier that is not a `u16`, the crate's own.
fn evaluate_commitment<C: Ciphersuite>(
    x: &Identifier<C>,
    commitment: &VerifiableSecretSharingCommitment<C>,
) -> Element<C> {
    let coefficients = commitment.coefficients();
    match id_of(x) {
        Some(small) => coefficients
            .iter()
            .rev()
            .fold(<C::Group>::identity(), |acc, c| {
                mul_small::<C>(acc, small) + c.value()
            }),
        None => {
            let x = x.to_scalar();
            coefficients
                .iter()
                .rev()
                .fold(<C::Group>::identity(), |acc, c| acc * x + c.value())
        }
    }
}

/// The crate's `dkg::part3`, with the same checks in the same order, the same errors (the
/// first bad sender named) and the same result, faster for large committees: every
/// commitment is evaluated at a small identifier by `evaluate_commitment`, both to check
/// each received share and to derive every participant's verifying share. The rest is the
/// crate's own steps (`sum_commitments`, `post_dkg`). `tests/crypto/test_dkg_part3.py`
/// compares the two on random committees and corrupted packages.
fn part3_horner<C: Suite>(
    secret: &dkg::round2::SecretPackage<C>,
    round1: &BTreeMap<Identifier<C>, dkg::round1::Package<C>>,
    round2: &BTreeMap<Identifier<C>, dkg::round2::Package<C>>,
) -> Result<(KeyPackage<C>, PublicKeyPackage<C>), Error<C>> {
    let me = *secret.identifier();
    if round1.len() != usize::from(*secret.max_signers()).saturating_sub(1) {
        return Err(Error::IncorrectNumberOfPackages);
    }
    if round1.contains_key(&me) || round2.contains_key(&me) {
        return Err(Error::UnknownIdentifier);
    }
    if round1.len() != round2.len() {
        return Err(Error::IncorrectNumberOfPackages);
    }
    if round1.keys().any(|id| !round2.contains_key(id)) {
        return Err(Error::IncorrectPackage);
    }
    let mut signing_share = <<C::Group as Group>::Field>::zero();
    for (sender, package) in round2 {
        let commitment = round1
            .get(sender)
            .ok_or(Error::PackageNotFound)?
            .commitment();
        let share = package.signing_share().to_scalar();
        if <C::Group>::generator() * share != evaluate_commitment(&me, commitment) {
            return Err(Error::InvalidSecretShare {
                culprit: Some(*sender),
            });
        }
        if commitment.coefficients().is_empty() {
            return Err(Error::MissingCommitment);
        }
        signing_share = signing_share + share;
    }
    let signing_share = SigningShare::new(signing_share + secret.secret_share());
    let verifying_share: VerifyingShare<C> = signing_share.into();
    // In identifier order, as the crate sums them (the first sets the length).
    let commitments: BTreeMap<Identifier<C>, &VerifiableSecretSharingCommitment<C>> = round1
        .iter()
        .map(|(id, p)| (*id, p.commitment()))
        .chain(std::iter::once((me, secret.commitment())))
        .collect();
    let group = keys::sum_commitments(&commitments.values().copied().collect::<Vec<_>>())?;
    let verifying_shares = commitments
        .keys()
        .map(|id| (*id, VerifyingShare::new(evaluate_commitment(id, &group))))
        .collect();
    let min_signers = u16::try_from(group.coefficients().len())
        .map_err(|_| Error::IncorrectNumberOfCommitments)?;
    let public = PublicKeyPackage::new(
        verifying_shares,
        VerifyingKey::from_commitment(&group)?,
        Some(min_signers),
    );
    let key = KeyPackage::new(
        me,
        signing_share,
        verifying_share,
        *public.verifying_key(),
        *secret.min_signers(),
    );
    C::post_dkg(key, public)
}

impl Flavour {
    fn of(refresh: bool) -> Self {
        if refresh {
            Flavour::Refresh
        } else {
            Flavour::Keygen
        }
    }
}

/// Round 1 of a DKG, or of a refresh when `refresh` is set.
#[pyfunction]
fn frost_dkg_part1(
    py: Python<'_>,
    suite: &str,
    refresh: bool,
    id: u16,
    max_signers: u16,
    min_signers: u16,
) -> PyResult<(Py<PyBytes>, Py<PyBytes>)> {
    let flavour = Flavour::of(refresh);
    let (s, p) = dispatch!(suite, dkg_part1_g(flavour, id, max_signers, min_signers))?;
    Ok((py_bytes(py, s), py_bytes(py, p)))
}

/// Round 2 of a DKG, or of a refresh when `refresh` is set.
#[pyfunction]
fn frost_dkg_part2(
    py: Python<'_>,
    suite: &str,
    refresh: bool,
    secret: In,
    round1: HMap<'_>,
) -> PyResult<(Py<PyBytes>, IdMap)> {
    let (s, out) = dispatch!(suite, dkg_part2_g(Flavour::of(refresh), secret, round1))?;
    Ok((py_bytes(py, s), out))
}

/// The DKG's last step. `crate_checks` runs the crate's `dkg::part3` instead of
/// `part3_horner` (same result; the differential test compares them).
#[pyfunction]
#[pyo3(signature = (suite, secret, round1, round2, crate_checks=false))]
fn frost_dkg_part3(
    py: Python<'_>,
    suite: &str,
    secret: In,
    round1: HMap<'_>,
    round2: HMap<'_>,
    crate_checks: bool,
) -> PyResult<(Py<PyBytes>, Py<PyBytes>)> {
    let (k, p) = dispatch!(suite, dkg_part3_g(py, secret, round1, round2, crate_checks))?;
    Ok((py_bytes(py, k), py_bytes(py, p)))
}

// ---------------------------------------------------------------------------
// Parsed objects: decoded once, kept in Rust, passed back by Python as handles
// ---------------------------------------------------------------------------

/// A crate object parsed once and kept on the Rust side. Python holds it opaquely next
/// to the object's bytes and passes it back instead of them, so a package's points are
/// decompressed (and, for Ed25519, checked for torsion) once per process, not once per
/// call. It has no methods: what it holds is read through the functions below.
#[pyclass(module = "synod._core", frozen)]
pub(crate) struct FrostParsed {
    obj: Box<dyn Any + Send + Sync>,
}

fn parsed<T: Any + Send + Sync>(obj: T) -> FrostParsed {
    FrostParsed { obj: Box::new(obj) }
}

/// A `FrostParsed` argument; anything else is `CoreError("invalid_parameters")`, like
/// every other bad argument (pyo3's own `TypeError` would escape the error mapping).
struct H<'py>(Bound<'py, FrostParsed>);

impl<'py> FromPyObject<'py> for H<'py> {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        ob.downcast::<FrostParsed>()
            .map(|b| H(b.clone()))
            .map_err(|_| {
                core_err(
                    "invalid_parameters",
                    vec![],
                    "expected a parsed FROST object",
                )
            })
    }
}

impl H<'_> {
    /// The object, if it is a `T` (right kind, right ciphersuite).
    fn get<T: 'static>(&self, what: &str) -> PyResult<&T> {
        self.0.get().obj.downcast_ref::<T>().ok_or_else(|| {
            core_err(
                "invalid_parameters",
                vec![],
                format!("expected a parsed {what} of this ciphersuite"),
            )
        })
    }
}

type HMap<'py> = BTreeMap<u16, H<'py>>;

/// Parse bytes from a peer or from storage into a handle (the kinds signing uses).
fn parse_g<C: Suite>(kind: &str, bytes: In) -> PyResult<FrostParsed> {
    Ok(match kind {
        "key_package" => parsed(de(&bytes, kind, KeyPackage::<C>::deserialize)?),
        "public_key_package" => parsed(de(&bytes, kind, PublicKeyPackage::<C>::deserialize)?),
        "signing_nonces" => parsed(de(&bytes, kind, SigningNonces::<C>::deserialize)?),
        "signing_commitments" => parsed(de(&bytes, kind, SigningCommitments::<C>::deserialize)?),
        "signing_package" => {
            let sp = de(&bytes, kind, SigningPackage::<C>::deserialize)?;
            // Identifiers are u16 here; refuse any other scalar at the edge.
            for id in sp.signing_commitments().keys() {
                id_or_err(id, "signing package")?;
            }
            parsed(sp)
        }
        "signature_share" => parsed(de(&bytes, kind, SignatureShare::<C>::deserialize)?),
        "signature" => parsed(de(&bytes, kind, Signature::<C>::deserialize)?),
        "dkg_round1_package" => parsed(de(&bytes, kind, dkg::round1::Package::<C>::deserialize)?),
        "dkg_round2_package" => parsed(de(&bytes, kind, dkg::round2::Package::<C>::deserialize)?),
        other => {
            return Err(core_err(
                "invalid_parameters",
                vec![],
                format!("object kind {other:?} is unknown or has no parsed form"),
            ))
        }
    })
}

/// The crate's serialization of a parsed object (Python asks for it only when it needs
/// the bytes: to send, store or compare them).
fn serialize_g<C: Suite>(h: H<'_>) -> PyResult<Bytes> {
    let o = &h.0.get().obj;
    macro_rules! try_kind {
        ($($t:ty),*) => {$(
            if let Some(x) = o.downcast_ref::<$t>() {
                return ser(x.serialize());
            }
        )*};
    }
    try_kind!(
        KeyPackage<C>,
        PublicKeyPackage<C>,
        SigningNonces<C>,
        SigningCommitments<C>,
        SigningPackage<C>,
        Signature<C>,
        dkg::round1::Package<C>,
        dkg::round2::Package<C>
    );
    if let Some(x) = o.downcast_ref::<SignatureShare<C>>() {
        return Ok(x.serialize());
    }
    Err(core_err(
        "invalid_parameters",
        vec![],
        "not a parsed object of this ciphersuite",
    ))
}

/// Handles of an identifier-keyed map, as the crate's map.
fn handle_map<C: Ciphersuite, T: Clone + 'static>(
    m: &HMap<'_>,
    what: &str,
) -> PyResult<BTreeMap<Identifier<C>, T>> {
    let mut out = BTreeMap::new();
    for (id, h) in m {
        out.insert(ident::<C>(*id)?, h.get::<T>(what)?.clone());
    }
    Ok(out)
}

/// The public key package, tweaked if asked (BIP341); borrowed when not.
fn tweaked_public<'a, C: Suite>(
    pkp: &'a H<'_>,
    taproot: bool,
    merkle_root: &Option<In>,
) -> PyResult<std::borrow::Cow<'a, PublicKeyPackage<C>>> {
    let p = pkp.get::<PublicKeyPackage<C>>("public key package")?;
    Ok(match tweak_root(taproot, merkle_root)? {
        Some(root) => std::borrow::Cow::Owned(C::tweak_public_package(p.clone(), root)?),
        None => std::borrow::Cow::Borrowed(p),
    })
}

// ---------------------------------------------------------------------------
// Signing: round 1, signing package, round 2, aggregate, verify
// ---------------------------------------------------------------------------

// Results are handles: Python serializes one only when it needs the bytes.

fn round1_g<C: Suite>(key_package: H<'_>) -> PyResult<(FrostParsed, FrostParsed)> {
    let kp = key_package.get::<KeyPackage<C>>("key package")?;
    let (nonces, commitments) = frost_core::round1::commit(kp.signing_share(), &mut OsRng);
    Ok((parsed(nonces), parsed(commitments)))
}

fn signing_package_g<C: Suite>(commitments: HMap<'_>, message: In) -> PyResult<FrostParsed> {
    let c = handle_map::<C, SigningCommitments<C>>(&commitments, "signing commitments")?;
    Ok(parsed(SigningPackage::new(c, &message)))
}

fn tweak_root(taproot: bool, merkle_root: &Option<In>) -> PyResult<Option<Option<&[u8]>>> {
    match (taproot, merkle_root) {
        (false, None) => Ok(None),
        (false, Some(_)) => Err(core_err(
            "invalid_parameters",
            vec![],
            "merkle_root given without taproot",
        )),
        (true, root) => Ok(Some(root.as_deref())),
    }
}

fn round2_g<C: Suite>(
    signing_package: H<'_>,
    nonces: H<'_>,
    key_package: H<'_>,
    taproot: bool,
    merkle_root: Option<In>,
) -> PyResult<FrostParsed> {
    let sp = signing_package.get::<SigningPackage<C>>("signing package")?;
    let n = nonces.get::<SigningNonces<C>>("signing nonces")?;
    let kp = key_package.get::<KeyPackage<C>>("key package")?;
    let share = match tweak_root(taproot, &merkle_root)? {
        Some(root) => frost_core::round2::sign(sp, n, &C::tweak_key_package(kp.clone(), root)?),
        None => frost_core::round2::sign(sp, n, kp),
    }
    .map_err(|e| frost_err(e))?;
    Ok(parsed(share))
}

fn aggregate_g<C: Suite>(
    signing_package: H<'_>,
    shares: HMap<'_>,
    public_package: H<'_>,
    taproot: bool,
    merkle_root: Option<In>,
) -> PyResult<FrostParsed> {
    let sp = signing_package.get::<SigningPackage<C>>("signing package")?;
    let sh = handle_map::<C, SignatureShare<C>>(&shares, "signature share")?;
    let pkp = tweaked_public::<C>(&public_package, taproot, &merkle_root)?;
    let sig = frost_core::aggregate_custom(sp, &sh, &pkp, CheaterDetection::AllCheaters)
        .map_err(|e| frost_err(e))?;
    Ok(parsed(sig))
}

/// Check one signature share as it arrives (ROAST excludes a signer on its first bad share).
fn verify_share_g<C: Suite>(
    id: u16,
    signing_package: H<'_>,
    share: H<'_>,
    public_package: H<'_>,
    taproot: bool,
    merkle_root: Option<In>,
) -> PyResult<()> {
    let sp = signing_package.get::<SigningPackage<C>>("signing package")?;
    let sh = share.get::<SignatureShare<C>>("signature share")?;
    let pkp = tweaked_public::<C>(&public_package, taproot, &merkle_root)?;
    let ident = ident::<C>(id)?;
    let vs = pkp.verifying_shares().get(&ident).ok_or_else(|| {
        core_err(
            "invalid_parameters",
            vec![id],
            "signer is not in the public key package",
        )
    })?;
    frost_core::verify_signature_share(ident, vs, sh, sp, pkp.verifying_key())
        .map_err(|e| core_err("invalid_share", vec![id], e.to_string()))
}

fn verifying_key_g<C: Suite>(
    public_package: H<'_>,
    taproot: bool,
    merkle_root: Option<In>,
) -> PyResult<Bytes> {
    let pkp = tweaked_public::<C>(&public_package, taproot, &merkle_root)?;
    ser(pkp.verifying_key().serialize())
}

fn verify_g<C: Suite>(verifying_key: In, message: In, signature: In) -> PyResult<()> {
    let vk = de(
        &verifying_key,
        "verifying key",
        VerifyingKey::<C>::deserialize,
    )?;
    let sig = Signature::<C>::deserialize(&signature).map_err(|e| {
        core_err(
            "invalid_signature",
            vec![],
            format!("signature does not parse: {e}"),
        )
    })?;
    vk.verify(&message, &sig).map_err(|e| frost_err(e))
}

/// Verify a signature the core made or parsed, under a public key package's group key.
fn verify_parsed_g<C: Suite>(
    public_package: H<'_>,
    message: In,
    signature: H<'_>,
    taproot: bool,
    merkle_root: Option<In>,
) -> PyResult<()> {
    let sig = signature.get::<Signature<C>>("signature")?;
    let pkp = tweaked_public::<C>(&public_package, taproot, &merkle_root)?;
    pkp.verifying_key()
        .verify(&message, sig)
        .map_err(|e| frost_err(e))
}

/// Parse a signing object once; pass the handle wherever its bytes were passed before.
/// Without the GIL: a large package (a 1,000-member DKG's round-1 package has 800 points)
/// takes milliseconds to decode.
#[pyfunction]
fn frost_parse(py: Python<'_>, suite: &str, kind: &str, bytes: In) -> PyResult<FrostParsed> {
    py.allow_threads(|| dispatch!(suite, parse_g(kind, bytes)))
}

/// The crate's serialization of a parsed object.
#[pyfunction]
fn frost_serialize(py: Python<'_>, suite: &str, parsed: H<'_>) -> PyResult<Py<PyBytes>> {
    Ok(py_bytes(py, dispatch!(suite, serialize_g(parsed))?))
}

/// Round 1: (nonces, commitments) handles.
#[pyfunction]
fn frost_round1(suite: &str, key_package: H<'_>) -> PyResult<(FrostParsed, FrostParsed)> {
    dispatch!(suite, round1_g(key_package))
}

#[pyfunction]
fn frost_signing_package(suite: &str, commitments: HMap<'_>, message: In) -> PyResult<FrostParsed> {
    dispatch!(suite, signing_package_g(commitments, message))
}

#[pyfunction]
#[pyo3(signature = (suite, signing_package, nonces, key_package, taproot=false, merkle_root=None))]
fn frost_round2(
    suite: &str,
    signing_package: H<'_>,
    nonces: H<'_>,
    key_package: H<'_>,
    taproot: bool,
    merkle_root: Option<In>,
) -> PyResult<FrostParsed> {
    dispatch!(
        suite,
        round2_g(signing_package, nonces, key_package, taproot, merkle_root)
    )
}

#[pyfunction]
#[pyo3(signature = (suite, signing_package, shares, public_package, taproot=false, merkle_root=None))]
fn frost_aggregate(
    suite: &str,
    signing_package: H<'_>,
    shares: HMap<'_>,
    public_package: H<'_>,
    taproot: bool,
    merkle_root: Option<In>,
) -> PyResult<FrostParsed> {
    dispatch!(
        suite,
        aggregate_g(
            signing_package,
            shares,
            public_package,
            taproot,
            merkle_root
        )
    )
}

/// Verify a parsed signature under a parsed public key package's (tweaked) group key.
#[pyfunction]
#[pyo3(signature = (suite, public_package, message, signature, taproot=false, merkle_root=None))]
fn frost_verify_parsed(
    suite: &str,
    public_package: H<'_>,
    message: In,
    signature: H<'_>,
    taproot: bool,
    merkle_root: Option<In>,
) -> PyResult<()> {
    dispatch!(
        suite,
        verify_parsed_g(public_package, message, signature, taproot, merkle_root)
    )
}

#[pyfunction]
#[pyo3(signature = (suite, id, signing_package, share, public_package, taproot=false, merkle_root=None))]
fn frost_verify_share(
    suite: &str,
    id: u16,
    signing_package: H<'_>,
    share: H<'_>,
    public_package: H<'_>,
    taproot: bool,
    merkle_root: Option<In>,
) -> PyResult<()> {
    dispatch!(
        suite,
        verify_share_g(
            id,
            signing_package,
            share,
            public_package,
            taproot,
            merkle_root
        )
    )
}

#[pyfunction]
#[pyo3(signature = (suite, public_package, taproot=false, merkle_root=None))]
fn frost_verifying_key(
    py: Python<'_>,
    suite: &str,
    public_package: H<'_>,
    taproot: bool,
    merkle_root: Option<In>,
) -> PyResult<Py<PyBytes>> {
    Ok(py_bytes(
        py,
        dispatch!(suite, verifying_key_g(public_package, taproot, merkle_root))?,
    ))
}

/// Verify a signature with the crate's verifier (BIP340 for secp256k1-tr, RFC 8032 for ed25519).
#[pyfunction]
fn frost_verify(suite: &str, verifying_key: In, message: In, signature: In) -> PyResult<()> {
    dispatch!(suite, verify_g(verifying_key, message, signature))
}

// ---------------------------------------------------------------------------
// Inspecting packages
// ---------------------------------------------------------------------------

fn key_package_info_g<C: Suite>(key_package: H<'_>) -> PyResult<(u16, u16, Bytes, Bytes)> {
    let kp = key_package.get::<KeyPackage<C>>("key package")?;
    let id = id_or_err(kp.identifier(), "key package")?;
    Ok((
        id,
        *kp.min_signers(),
        ser(kp.verifying_share().serialize())?,
        ser(kp.verifying_key().serialize())?,
    ))
}

fn public_package_info_g<C: Suite>(public_package: H<'_>) -> PyResult<(Option<u16>, IdMap, Bytes)> {
    let pkp = public_package.get::<PublicKeyPackage<C>>("public key package")?;
    let mut shares = BTreeMap::new();
    for (id, vs) in pkp.verifying_shares() {
        shares.insert(id_or_err(id, "public key package")?, ser(vs.serialize())?);
    }
    Ok((
        pkp.min_signers(),
        shares,
        ser(pkp.verifying_key().serialize())?,
    ))
}

fn signing_package_info_g<C: Suite>(signing_package: H<'_>) -> PyResult<(Bytes, Vec<u16>)> {
    let sp = signing_package.get::<SigningPackage<C>>("signing package")?;
    let mut signers = Vec::with_capacity(sp.signing_commitments().len());
    for id in sp.signing_commitments().keys() {
        signers.push(id_or_err(id, "signing package")?);
    }
    Ok((sp.message().clone(), signers))
}

/// One signer's commitments in a signing package (without serializing the others').
fn signing_package_commitment_g<C: Suite>(
    signing_package: H<'_>,
    id: u16,
) -> PyResult<Option<FrostParsed>> {
    let sp = signing_package.get::<SigningPackage<C>>("signing package")?;
    Ok(sp
        .signing_commitments()
        .get(&ident::<C>(id)?)
        .map(|c| parsed(*c)))
}

// ---------------------------------------------------------------------------
// A signing package's shape, read before the crate parses it (bounded cost)
// ---------------------------------------------------------------------------

/// A little cursor over the crate's postcard encoding: enough to read lengths and
/// identifiers and skip fixed-size fields, never to decode a point.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    /// postcard's unsigned LEB128 length (at most 10 bytes for a u64).
    fn varint(&mut self) -> Option<usize> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = *self.take(1)?.first()?;
            value |= u64::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return usize::try_from(value).ok();
            }
        }
        None
    }

    /// The crate's header: format version 0 and a 4-byte ciphersuite id.
    fn header(&mut self) -> Option<()> {
        let h = self.take(5)?;
        (h[0] == 0).then_some(())
    }
}

/// The `u16` of a serialized identifier (a field scalar), or `None` for any other value.
fn raw_id<C: Ciphersuite>(bytes: &[u8]) -> Option<u16> {
    let one = Identifier::<C>::try_from(1u16).ok()?.serialize();
    let little_endian = one.first() == Some(&1);
    let split = if little_endian {
        2
    } else {
        bytes.len().checked_sub(2)?
    };
    let (a, b) = (bytes.get(..split)?, bytes.get(split..)?);
    let (low, high) = if little_endian { (a, b) } else { (b, a) };
    if low.len() != 2 {
        return None;
    }
    if high.iter().any(|&b| b != 0) {
        return None;
    }
    let v = if little_endian {
        u16::from_le_bytes([low[0], low[1]])
    } else {
        u16::from_be_bytes([low[0], low[1]])
    };
    (v != 0).then_some(v)
}

fn bad_package(message: impl Into<String>) -> PyErr {
    core_err(
        "decode",
        vec![],
        format!("signing package: {}", message.into()),
    )
}

/// Check a signing package's shape in time linear in the committee size, before the crate
/// decompresses any point: at most one commitment per committee member, at least
/// `min_signers`, every identifier a committee member's (in the crate's strictly increasing
/// order), `me` among them, a message of at most `max_message` bytes, nothing after it.
/// Then the crate parses it, once: the handle is what the signer signs with.
fn check_signing_package_g<C: Suite>(
    signing_package: In,
    me: u16,
    min_signers: u16,
    committee: Vec<u16>,
    max_message: usize,
) -> PyResult<FrostParsed> {
    let scalar_len = <<C::Group as Group>::Field>::serialize(&<<C::Group as Group>::Field>::one())
        .as_ref()
        .len();
    let element_len = <C::Group>::serialize(&<C::Group>::generator())
        .map_err(|_| bad_package("ciphersuite cannot serialize its generator"))?
        .as_ref()
        .len();
    let mut members = committee;
    members.sort_unstable();
    members.dedup();
    let mut cur = Cursor {
        buf: &signing_package,
        pos: 0,
    };
    cur.header().ok_or_else(|| bad_package("bad header"))?;
    let count = cur.varint().ok_or_else(|| bad_package("bad length"))?;
    if count > members.len() {
        return Err(bad_package(format!(
            "{count} commitments for a committee of {}",
            members.len()
        )));
    }
    if count < usize::from(min_signers) {
        return Err(bad_package(format!(
            "{count} commitments, fewer than the threshold {min_signers}"
        )));
    }
    let mut previous = 0u16;
    let mut mine = false;
    for _ in 0..count {
        let raw = cur
            .take(scalar_len)
            .ok_or_else(|| bad_package("truncated"))?;
        let id = raw_id::<C>(raw).ok_or_else(|| bad_package("identifier outside 1..=65535"))?;
        if id <= previous {
            return Err(bad_package("identifiers not strictly increasing"));
        }
        previous = id;
        if members.binary_search(&id).is_err() {
            return Err(bad_package(format!(
                "identifier {id} is not in the committee"
            )));
        }
        mine |= id == me;
        cur.header()
            .ok_or_else(|| bad_package("bad commitment header"))?;
        cur.take(2 * element_len)
            .ok_or_else(|| bad_package("truncated"))?;
    }
    if !mine {
        return Err(bad_package(format!("no commitment of signer {me}")));
    }
    let len = cur
        .varint()
        .ok_or_else(|| bad_package("bad message length"))?;
    if len > max_message {
        return Err(bad_package(format!(
            "message of {len} bytes, more than {max_message}"
        )));
    }
    cur.take(len)
        .ok_or_else(|| bad_package("truncated message"))?;
    if cur.pos != signing_package.len() {
        return Err(bad_package("trailing bytes"));
    }
    parse_g::<C>("signing_package", signing_package)
}

/// Shape check of a signing package for signer `me` (see `check_signing_package_g`).
#[pyfunction]
fn frost_check_signing_package(
    suite: &str,
    signing_package: In,
    me: u16,
    min_signers: u16,
    committee: Vec<u16>,
    max_message: usize,
) -> PyResult<FrostParsed> {
    dispatch!(
        suite,
        check_signing_package_g(signing_package, me, min_signers, committee, max_message)
    )
}

/// (message, signers in increasing order) of a signing package.
#[pyfunction]
fn frost_signing_package_info(
    py: Python<'_>,
    suite: &str,
    signing_package: H<'_>,
) -> PyResult<(Py<PyBytes>, Vec<u16>)> {
    let (m, signers) = dispatch!(suite, signing_package_info_g(signing_package))?;
    Ok((py_bytes(py, m), signers))
}

/// Signer `id`'s commitments in a signing package, or `None`.
#[pyfunction]
fn frost_signing_package_commitment(
    suite: &str,
    signing_package: H<'_>,
    id: u16,
) -> PyResult<Option<FrostParsed>> {
    dispatch!(suite, signing_package_commitment_g(signing_package, id))
}

/// (identifier, min_signers, verifying_share, verifying_key) of a key package.
#[pyfunction]
fn frost_key_package_info(
    py: Python<'_>,
    suite: &str,
    key_package: H<'_>,
) -> PyResult<(u16, u16, Py<PyBytes>, Py<PyBytes>)> {
    let (id, t, vs, vk) = dispatch!(suite, key_package_info_g(key_package))?;
    Ok((id, t, py_bytes(py, vs), py_bytes(py, vk)))
}

/// (min_signers, {id: verifying_share}, verifying_key) of a public key package.
#[pyfunction]
fn frost_public_package_info(
    py: Python<'_>,
    suite: &str,
    public_package: H<'_>,
) -> PyResult<(Option<u16>, IdMap, Py<PyBytes>)> {
    let (t, shares, vk) = dispatch!(suite, public_package_info_g(public_package))?;
    Ok((t, shares, py_bytes(py, vk)))
}

/// Check that bytes deserialize as the named FROST object (used to validate untrusted input
/// early). The kinds with a parsed form are checked by parsing them (`parse_g`).
fn check_g<C: Suite>(kind: &str, bytes: In) -> PyResult<()> {
    let r: Result<(), Error<C>> = match kind {
        "dkg_round1_secret" => dkg::round1::SecretPackage::<C>::deserialize(&bytes).map(drop),
        "dkg_round2_secret" => dkg::round2::SecretPackage::<C>::deserialize(&bytes).map(drop),
        "repair_delta" => repairable::Delta::<C>::deserialize(&bytes).map(drop),
        "repair_sigma" => repairable::Sigma::<C>::deserialize(&bytes).map(drop),
        "reshare_commitment" => {
            VerifiableSecretSharingCommitment::<C>::deserialize_whole(&bytes).map(drop)
        }
        "reshare_share" => SigningShare::<C>::deserialize(&bytes).map(drop),
        parsed_kind => return parse_g::<C>(parsed_kind, bytes).map(drop),
    };
    r.map_err(|e| core_err("decode", vec![], format!("{kind}: {e}")))
}

#[pyfunction]
fn frost_check(suite: &str, kind: &str, bytes: In) -> PyResult<()> {
    dispatch!(suite, check_g(kind, bytes))
}

// ---------------------------------------------------------------------------
// Proactive refresh (distributed; the crate's refresh-DKG)
// ---------------------------------------------------------------------------

fn refresh_part3_g<C: Suite>(
    secret: In,
    round1: HMap<'_>,
    round2: HMap<'_>,
    public_package: In,
    key_package: In,
) -> PyResult<(Bytes, Bytes)> {
    let (secret, r1, r2) = decode_part3::<C>(&secret, &round1, &round2)?;
    let pkp = de(
        &public_package,
        "public key package",
        PublicKeyPackage::<C>::deserialize,
    )?;
    let kp = de(&key_package, "key package", KeyPackage::<C>::deserialize)?;
    let group = *pkp.verifying_key();
    let (kp, pkp) =
        refresh::refresh_dkg_shares(&secret, &r1, &r2, pkp, kp).map_err(|e| frost_err(e))?;
    if *pkp.verifying_key() != group {
        return Err(core_err(
            "protocol",
            vec![],
            "refresh changed the group key",
        ));
    }
    Ok((ser(kp.serialize())?, ser(pkp.serialize())?))
}

#[pyfunction]
fn frost_refresh_part3(
    py: Python<'_>,
    suite: &str,
    secret: In,
    round1: HMap<'_>,
    round2: HMap<'_>,
    public_package: In,
    key_package: In,
) -> PyResult<(Py<PyBytes>, Py<PyBytes>)> {
    let (k, p) = dispatch!(
        suite,
        refresh_part3_g(secret, round1, round2, public_package, key_package)
    )?;
    Ok((py_bytes(py, k), py_bytes(py, p)))
}

// ---------------------------------------------------------------------------
// Repair of a lost share from t helpers (the crate's RTS)
// ---------------------------------------------------------------------------

fn repair_part1_g<C: Suite>(
    helpers: Vec<u16>,
    key_package: In,
    participant: u16,
) -> PyResult<IdMap> {
    let kp = de(&key_package, "key package", KeyPackage::<C>::deserialize)?;
    let hs = helpers
        .iter()
        .map(|h| ident::<C>(*h))
        .collect::<PyResult<Vec<_>>>()?;
    let deltas = repairable::repair_share_part1(&hs, &kp, &mut OsRng, ident::<C>(participant)?)
        .map_err(|e| frost_err(e))?;
    encode_map(&deltas, |d| Ok(d.serialize()))
}

fn repair_part2_g<C: Suite>(deltas: InMap) -> PyResult<Bytes> {
    let ds = decode_map(&deltas, "repair delta", repairable::Delta::<C>::deserialize)?;
    let ds: Vec<_> = ds.into_values().collect();
    Ok(repairable::repair_share_part2(&ds).serialize())
}

fn repair_part3_g<C: Suite>(
    sigmas: InMap,
    participant: u16,
    public_package: In,
) -> PyResult<Bytes> {
    let ss = decode_map(&sigmas, "repair sigma", repairable::Sigma::<C>::deserialize)?;
    let ss: Vec<_> = ss.into_values().collect();
    let pkp = de(
        &public_package,
        "public key package",
        PublicKeyPackage::<C>::deserialize,
    )?;
    let id = ident::<C>(participant)?;
    let kp = repairable::repair_share_part3(&ss, id, &pkp).map_err(|e| frost_err(e))?;
    // The crate does not check the result; a wrong sigma would silently give a useless share.
    match pkp.verifying_shares().get(&id) {
        Some(expected) if expected == kp.verifying_share() => ser(kp.serialize()),
        Some(_) => Err(core_err(
            "invalid_package",
            vec![],
            "repaired share does not match the participant's verifying share (a helper sent a bad value)",
        )),
        None => Err(core_err("invalid_parameters", vec![participant], "participant is not in the public key package")),
    }
}

#[pyfunction]
fn frost_repair_part1(
    suite: &str,
    helpers: Vec<u16>,
    key_package: In,
    participant: u16,
) -> PyResult<IdMap> {
    dispatch!(suite, repair_part1_g(helpers, key_package, participant))
}

#[pyfunction]
fn frost_repair_part2(py: Python<'_>, suite: &str, deltas: InMap) -> PyResult<Py<PyBytes>> {
    Ok(py_bytes(py, dispatch!(suite, repair_part2_g(deltas))?))
}

#[pyfunction]
fn frost_repair_part3(
    py: Python<'_>,
    suite: &str,
    sigmas: InMap,
    participant: u16,
    public_package: In,
) -> PyResult<Py<PyBytes>> {
    Ok(py_bytes(
        py,
        dispatch!(suite, repair_part3_g(sigmas, participant, public_package))?,
    ))
}

// ---------------------------------------------------------------------------
// Resharing to a new committee and threshold, same group key
// ---------------------------------------------------------------------------

/// The new committee's threshold must be a real threshold of that committee (the crate
/// needs at least 2), checked before any commitment is indexed.
fn check_new_threshold(new_min: u16, new_ids: &[u16]) -> PyResult<()> {
    let distinct: BTreeSet<u16> = new_ids.iter().copied().collect();
    if distinct.len() != new_ids.len() {
        return Err(core_err(
            "invalid_parameters",
            vec![],
            "new identifiers must be distinct",
        ));
    }
    if new_min < 2 || usize::from(new_min) > new_ids.len() {
        return Err(core_err(
            "invalid_parameters",
            vec![],
            format!(
                "new threshold {new_min} must be in 2..={} (the new committee's size)",
                new_ids.len()
            ),
        ));
    }
    Ok(())
}

/// Old signer `kp.identifier` in `old_signers`: split λ_i·s_i among `new_ids` with threshold `new_min`.
/// Returns the VSS commitment (to broadcast) and one sub-share per new identifier (to send privately).
fn reshare_part1_g<C: Suite>(
    key_package: In,
    old_signers: Vec<u16>,
    new_ids: Vec<u16>,
    new_min: u16,
) -> PyResult<(Bytes, IdMap)> {
    check_new_threshold(new_min, &new_ids)?;
    let kp = de(&key_package, "key package", KeyPackage::<C>::deserialize)?;
    let old_set = old_signers
        .iter()
        .map(|i| ident::<C>(*i))
        .collect::<PyResult<BTreeSet<_>>>()?;
    if old_set.len() < *kp.min_signers() as usize {
        return Err(core_err(
            "invalid_parameters",
            vec![],
            "fewer old signers than the old threshold",
        ));
    }
    if !old_set.contains(kp.identifier()) {
        return Err(core_err(
            "invalid_parameters",
            vec![],
            "this key package is not among the old signers",
        ));
    }
    let new = new_ids
        .iter()
        .map(|i| ident::<C>(*i))
        .collect::<PyResult<Vec<_>>>()?;
    let lambda = frost_core::compute_lagrange_coefficient(&old_set, None, *kp.identifier())
        .map_err(|e| frost_err(e))?;
    let weighted = SigningKey::<C>::from_scalar(kp.signing_share().to_scalar() * lambda)
        .map_err(|e| frost_err(e))?;
    let max = u16::try_from(new.len())
        .map_err(|_| core_err("invalid_parameters", vec![], "too many new signers"))?;
    let (shares, _) = keys::split(
        &weighted,
        max,
        new_min,
        IdentifierList::Custom(&new),
        &mut OsRng,
    )
    .map_err(|e| frost_err(e))?;
    let commitment = shares
        .values()
        .next()
        .ok_or_else(|| core_err("invalid_parameters", vec![], "no new signers"))?
        .commitment()
        .serialize_whole()
        .map_err(|e| frost_err(e))?;
    let out = encode_map(&shares, |s| Ok(scalar_bytes(s.signing_share())))?;
    Ok((commitment, out))
}

/// New signer `id`: check every old signer's commitment against its old verification share
/// (weighted by its Lagrange coefficient) and every sub-share against its commitment, then sum.
#[allow(clippy::too_many_arguments)]
fn reshare_part2_g<C: Suite>(
    id: u16,
    new_ids: Vec<u16>,
    new_min: u16,
    old_public_package: In,
    commitments: InMap,
    shares: InMap,
) -> PyResult<(Bytes, Bytes)> {
    check_new_threshold(new_min, &new_ids)?;
    let old = de(
        &old_public_package,
        "old public key package",
        PublicKeyPackage::<C>::deserialize,
    )?;
    let old_ids: Vec<u16> = commitments.keys().copied().collect();
    if shares.keys().copied().collect::<Vec<_>>() != old_ids {
        return Err(core_err(
            "invalid_parameters",
            vec![],
            "commitments and shares come from different old signers",
        ));
    }
    let old_min = old.min_signers().unwrap_or(0) as usize;
    if old_ids.len() < old_min {
        return Err(core_err(
            "invalid_parameters",
            vec![],
            "fewer old signers than the old threshold",
        ));
    }
    let old_set = old_ids
        .iter()
        .map(|i| ident::<C>(*i))
        .collect::<PyResult<BTreeSet<_>>>()?;
    let me = ident::<C>(id)?;
    let mut culprits = Vec::new();
    let mut accepted = Vec::new();
    let mut sum = <<C::Group as Group>::Field>::zero();
    for old_id in &old_ids {
        let oid = ident::<C>(*old_id)?;
        let commitment =
            match VerifiableSecretSharingCommitment::<C>::deserialize_whole(&commitments[old_id]) {
                Ok(c) => c,
                Err(_) => {
                    culprits.push(*old_id);
                    continue;
                }
            };
        let share = match SigningShare::<C>::deserialize(&shares[old_id]) {
            Ok(s) => s,
            Err(_) => {
                culprits.push(*old_id);
                continue;
            }
        };
        if commitment.coefficients().len() != new_min as usize {
            culprits.push(*old_id);
            continue;
        }
        // Constant term must be λ_i · Y_i, binding the sub-sharing to the old share.
        let lambda = frost_core::compute_lagrange_coefficient(&old_set, None, oid)
            .map_err(|e| frost_err(e))?;
        let Some(old_vs) = old.verifying_shares().get(&oid) else {
            return Err(core_err(
                "invalid_parameters",
                vec![*old_id],
                "old signer is not in the old public key package",
            ));
        };
        let expected = old_vs.to_element() * lambda;
        if commitment.coefficients().first().map(|c| c.value()) != Some(expected) {
            culprits.push(*old_id);
            continue;
        }
        // The crate's own Feldman check of f_i(id) against the commitment.
        if SecretShare::new(me, share, commitment.clone())
            .verify()
            .is_err()
        {
            culprits.push(*old_id);
            continue;
        }
        sum = sum + share.to_scalar();
        accepted.push(commitment);
    }
    if !culprits.is_empty() {
        return Err(core_err(
            "invalid_package",
            culprits,
            "invalid reshare commitment or sub-share",
        ));
    }
    let refs: Vec<&VerifiableSecretSharingCommitment<C>> = accepted.iter().collect();
    let group_commitment = keys::sum_commitments(&refs).map_err(|e| frost_err(e))?;
    let new_set = new_ids
        .iter()
        .map(|i| ident::<C>(*i))
        .collect::<PyResult<BTreeSet<_>>>()?;
    if !new_set.contains(&me) {
        return Err(core_err(
            "invalid_parameters",
            vec![],
            "this identifier is not in the new committee",
        ));
    }
    let from_commitment =
        PublicKeyPackage::from_commitment(&new_set, &group_commitment).map_err(|e| frost_err(e))?;
    if from_commitment.verifying_key() != old.verifying_key() {
        return Err(core_err(
            "protocol",
            vec![],
            "reshared commitments do not add up to the old group key",
        ));
    }
    let pkp = PublicKeyPackage::new(
        from_commitment.verifying_shares().clone(),
        *old.verifying_key(),
        Some(new_min),
    );
    let signing_share = SigningShare::new(sum);
    let verifying_share = VerifyingShare::from(signing_share);
    if pkp.verifying_shares().get(&me) != Some(&verifying_share) {
        return Err(core_err(
            "protocol",
            vec![],
            "new share does not match its verifying share",
        ));
    }
    let kp = KeyPackage::new(
        me,
        signing_share,
        verifying_share,
        *old.verifying_key(),
        new_min,
    );
    Ok((ser(kp.serialize())?, ser(pkp.serialize())?))
}

#[pyfunction]
fn frost_reshare_part1(
    py: Python<'_>,
    suite: &str,
    key_package: In,
    old_signers: Vec<u16>,
    new_ids: Vec<u16>,
    new_min: u16,
) -> PyResult<(Py<PyBytes>, IdMap)> {
    let (c, shares) = dispatch!(
        suite,
        reshare_part1_g(key_package, old_signers, new_ids, new_min)
    )?;
    Ok((py_bytes(py, c), shares))
}

#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn frost_reshare_part2(
    py: Python<'_>,
    suite: &str,
    id: u16,
    new_ids: Vec<u16>,
    new_min: u16,
    old_public_package: In,
    commitments: InMap,
    shares: InMap,
) -> PyResult<(Py<PyBytes>, Py<PyBytes>)> {
    let (k, p) = dispatch!(
        suite,
        reshare_part2_g(
            id,
            new_ids,
            new_min,
            old_public_package,
            commitments,
            shares
        )
    )?;
    Ok((py_bytes(py, k), py_bytes(py, p)))
}

// ---------------------------------------------------------------------------
// Import / export (single point of failure: documented as such in Python)
// ---------------------------------------------------------------------------

fn split_g<C: Suite>(
    secret: Option<In>,
    max_signers: u16,
    min_signers: u16,
) -> PyResult<(IdMap, Bytes)> {
    let key = match secret {
        Some(s) => de(&s, "signing key", SigningKey::<C>::deserialize)?,
        None => SigningKey::<C>::new(&mut OsRng),
    };
    let (shares, pkp) = keys::split(
        &key,
        max_signers,
        min_signers,
        IdentifierList::Default,
        &mut OsRng,
    )
    .map_err(|e| frost_err(e))?;
    let mut out = BTreeMap::new();
    for (id, share) in shares {
        // The dealer made these shares itself; rebuild the package from the public key
        // package instead of re-running the O(t) VSS check per share.
        let vs = pkp.verifying_shares()[&id];
        let kp = KeyPackage::new(
            id,
            *share.signing_share(),
            vs,
            *pkp.verifying_key(),
            min_signers,
        );
        out.insert(id_or_err(&id, "identifier")?, ser(kp.serialize())?);
    }
    Ok((out, ser(pkp.serialize())?))
}

fn reconstruct_g<C: Suite>(key_packages: Vec<In>) -> PyResult<Bytes> {
    let kps = key_packages
        .iter()
        .map(|b| de(b, "key package", KeyPackage::<C>::deserialize))
        .collect::<PyResult<Vec<_>>>()?;
    let key = keys::reconstruct(&kps).map_err(|e| frost_err(e))?;
    Ok(key.serialize())
}

/// Build packages from raw per-participant secret scalars (e.g. published test vectors).
fn import_shares_g<C: Suite>(shares: InMap, min_signers: u16) -> PyResult<(IdMap, Bytes)> {
    let mut verifying_shares = BTreeMap::new();
    let mut signing = BTreeMap::new();
    for (id, raw) in &shares {
        let s = SigningShare::<C>::deserialize(raw)
            .map_err(|e| core_err("decode", vec![*id], e.to_string()))?;
        verifying_shares.insert(ident::<C>(*id)?, VerifyingShare::from(s));
        signing.insert(*id, s);
    }
    // Recover the group key by interpolating the verifying shares in the exponent.
    let set: BTreeSet<_> = verifying_shares.keys().copied().collect();
    let mut group = <C::Group as Group>::identity();
    for (id, vs) in &verifying_shares {
        let l =
            frost_core::compute_lagrange_coefficient(&set, None, *id).map_err(|e| frost_err(e))?;
        group = group + vs.to_element() * l;
    }
    let vk = VerifyingKey::<C>::new(group);
    let pkp = PublicKeyPackage::new(verifying_shares.clone(), vk, Some(min_signers));
    let mut out = BTreeMap::new();
    for (id, s) in signing {
        let i = ident::<C>(id)?;
        out.insert(
            id,
            ser(KeyPackage::new(i, s, verifying_shares[&i], vk, min_signers).serialize())?,
        );
    }
    Ok((out, ser(pkp.serialize())?))
}

/// Wrap raw (hiding, binding) commitment points, or a raw share scalar, as crate objects.
fn raw_commitments_g<C: Suite>(hiding: In, binding: In) -> PyResult<Bytes> {
    let h = de(
        &hiding,
        "hiding commitment",
        NonceCommitment::<C>::deserialize,
    )?;
    let b = de(
        &binding,
        "binding commitment",
        NonceCommitment::<C>::deserialize,
    )?;
    ser(SigningCommitments::new(h, b).serialize())
}

fn raw_share_g<C: Suite>(scalar: In) -> PyResult<Bytes> {
    let s = de(&scalar, "signature share", SignatureShare::<C>::deserialize)?;
    Ok(s.serialize())
}

#[pyfunction]
#[pyo3(signature = (suite, max_signers, min_signers, secret=None))]
fn frost_split(
    py: Python<'_>,
    suite: &str,
    max_signers: u16,
    min_signers: u16,
    secret: Option<In>,
) -> PyResult<(IdMap, Py<PyBytes>)> {
    let (kps, pkp) = dispatch!(suite, split_g(secret, max_signers, min_signers))?;
    Ok((kps, py_bytes(py, pkp)))
}

#[pyfunction]
fn frost_reconstruct(py: Python<'_>, suite: &str, key_packages: Vec<In>) -> PyResult<Py<PyBytes>> {
    Ok(py_bytes(py, dispatch!(suite, reconstruct_g(key_packages))?))
}

#[pyfunction]
fn frost_import_shares(
    py: Python<'_>,
    suite: &str,
    shares: InMap,
    min_signers: u16,
) -> PyResult<(IdMap, Py<PyBytes>)> {
    let (kps, pkp) = dispatch!(suite, import_shares_g(shares, min_signers))?;
    Ok((kps, py_bytes(py, pkp)))
}

#[pyfunction]
fn frost_raw_commitments(
    py: Python<'_>,
    suite: &str,
    hiding: In,
    binding: In,
) -> PyResult<Py<PyBytes>> {
    Ok(py_bytes(
        py,
        dispatch!(suite, raw_commitments_g(hiding, binding))?,
    ))
}

#[pyfunction]
fn frost_raw_share(py: Python<'_>, suite: &str, scalar: In) -> PyResult<Py<PyBytes>> {
    Ok(py_bytes(py, dispatch!(suite, raw_share_g(scalar))?))
}

// ---------------------------------------------------------------------------
// Share verification with the per-package work done once (ROAST coordinators)
// ---------------------------------------------------------------------------

/// Everything `verify_signature_share` recomputes per call that depends only on the
/// package: binding factors, group commitment, challenge. Same crate functions, same order.
struct Prepared<C: Ciphersuite> {
    package: SigningPackage<C>,
    bindings: frost_core::BindingFactorList<C>,
    group_commitment: frost_core::GroupCommitment<C>,
    challenge: frost_core::Challenge<C>,
    public: PublicKeyPackage<C>,
}

fn prepare_g<C: Suite>(
    signing_package: H<'_>,
    public_package: H<'_>,
    taproot: bool,
    merkle_root: Option<In>,
) -> PyResult<Prepared<C>> {
    let sp = signing_package.get::<SigningPackage<C>>("signing package")?;
    let pkp = tweaked_public::<C>(&public_package, taproot, &merkle_root)?;
    let no_shares = BTreeMap::new();
    let (sp, _, pkp) = C::pre_aggregate(sp, &no_shares, &pkp).map_err(|e| frost_err(e))?;
    let bindings = frost_core::compute_binding_factor_list(&sp, pkp.verifying_key(), &[])
        .map_err(|e| frost_err(e))?;
    let sp = C::pre_commitment_aggregate(&sp, &bindings).map_err(|e| frost_err(e))?;
    let group_commitment =
        frost_core::compute_group_commitment(&sp, &bindings).map_err(|e| frost_err(e))?;
    let challenge = C::challenge(
        &group_commitment.clone().to_element(),
        pkp.verifying_key(),
        sp.message(),
    )
    .map_err(|e| frost_err(e))?;
    Ok(Prepared {
        package: sp.into_owned(),
        bindings,
        group_commitment,
        challenge,
        public: pkp.into_owned(),
    })
}

fn check_prepared<C: Suite>(p: &Prepared<C>, id: u16, share: &H<'_>) -> PyResult<()> {
    let ident = ident::<C>(id)?;
    let sh = *share.get::<SignatureShare<C>>("signature share")?;
    let vs = p.public.verifying_shares().get(&ident).ok_or_else(|| {
        core_err(
            "invalid_parameters",
            vec![id],
            "signer is not in the public key package",
        )
    })?;
    // Pass the single share through the ciphersuite's pre-processing, as the crate does.
    let one = BTreeMap::from([(ident, sh)]);
    let single = PublicKeyPackage::new(
        BTreeMap::from([(ident, *vs)]),
        *p.public.verifying_key(),
        None,
    );
    let (_, shares, pkp) = C::pre_aggregate(&p.package, &one, &single).map_err(|e| frost_err(e))?;
    frost_core::verify_signature_share_precomputed(
        ident,
        &p.package,
        &p.bindings,
        &p.group_commitment,
        &shares[&ident],
        &pkp.verifying_shares()[&ident],
        p.challenge,
    )
    .map_err(|e| core_err("invalid_share", vec![id], e.to_string()))
}

enum AnyPrepared {
    Tr(Box<Prepared<Tr>>),
    Ed(Box<Prepared<Ed>>),
}

/// Verifies many shares of one signing package, doing the O(t) work once.
#[pyclass(module = "synod._core")]
struct FrostShareVerifier {
    inner: AnyPrepared,
}

#[pymethods]
impl FrostShareVerifier {
    #[new]
    #[pyo3(signature = (suite, signing_package, public_package, taproot=false, merkle_root=None))]
    fn new(
        suite: &str,
        signing_package: H<'_>,
        public_package: H<'_>,
        taproot: bool,
        merkle_root: Option<In>,
    ) -> PyResult<Self> {
        crate::guarded(|| {
            Self::prepare(suite, signing_package, public_package, taproot, merkle_root)
        })
    }

    /// Raise `CoreError("invalid_share", [id], ...)` unless `share` is valid for signer `id`.
    fn verify(&self, id: u16, share: H<'_>) -> PyResult<()> {
        crate::guarded(|| match &self.inner {
            AnyPrepared::Tr(p) => check_prepared(p, id, &share),
            AnyPrepared::Ed(p) => check_prepared(p, id, &share),
        })
    }
}

impl FrostShareVerifier {
    fn prepare(
        suite: &str,
        signing_package: H<'_>,
        public_package: H<'_>,
        taproot: bool,
        merkle_root: Option<In>,
    ) -> PyResult<Self> {
        let inner = match suite {
            "secp256k1-tr" => AnyPrepared::Tr(Box::new(prepare_g::<Tr>(
                signing_package,
                public_package,
                taproot,
                merkle_root,
            )?)),
            "ed25519" => AnyPrepared::Ed(Box::new(prepare_g::<Ed>(
                signing_package,
                public_package,
                taproot,
                merkle_root,
            )?)),
            other => {
                return Err(core_err(
                    "invalid_parameters",
                    vec![],
                    format!("unknown ciphersuite {other:?}"),
                ))
            }
        };
        Ok(Self { inner })
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(frost_dkg_part1, m)?)?;
    m.add_function(wrap_pyfunction!(frost_dkg_part2, m)?)?;
    m.add_function(wrap_pyfunction!(frost_dkg_part3, m)?)?;
    m.add_function(wrap_pyfunction!(frost_round1, m)?)?;
    m.add_function(wrap_pyfunction!(frost_signing_package, m)?)?;
    m.add_function(wrap_pyfunction!(frost_round2, m)?)?;
    m.add_function(wrap_pyfunction!(frost_aggregate, m)?)?;
    m.add_function(wrap_pyfunction!(frost_verifying_key, m)?)?;
    m.add_function(wrap_pyfunction!(frost_verify, m)?)?;
    m.add_function(wrap_pyfunction!(frost_verify_share, m)?)?;
    m.add_class::<FrostShareVerifier>()?;
    m.add_class::<FrostParsed>()?;
    m.add_function(wrap_pyfunction!(frost_parse, m)?)?;
    m.add_function(wrap_pyfunction!(frost_serialize, m)?)?;
    m.add_function(wrap_pyfunction!(frost_verify_parsed, m)?)?;
    m.add_function(wrap_pyfunction!(frost_key_package_info, m)?)?;
    m.add_function(wrap_pyfunction!(frost_signing_package_info, m)?)?;
    m.add_function(wrap_pyfunction!(frost_signing_package_commitment, m)?)?;
    m.add_function(wrap_pyfunction!(frost_check_signing_package, m)?)?;
    m.add_function(wrap_pyfunction!(frost_public_package_info, m)?)?;
    m.add_function(wrap_pyfunction!(frost_check, m)?)?;
    m.add_function(wrap_pyfunction!(frost_refresh_part3, m)?)?;
    m.add_function(wrap_pyfunction!(frost_repair_part1, m)?)?;
    m.add_function(wrap_pyfunction!(frost_repair_part2, m)?)?;
    m.add_function(wrap_pyfunction!(frost_repair_part3, m)?)?;
    m.add_function(wrap_pyfunction!(frost_reshare_part1, m)?)?;
    m.add_function(wrap_pyfunction!(frost_reshare_part2, m)?)?;
    m.add_function(wrap_pyfunction!(frost_split, m)?)?;
    m.add_function(wrap_pyfunction!(frost_reconstruct, m)?)?;
    m.add_function(wrap_pyfunction!(frost_import_shares, m)?)?;
    m.add_function(wrap_pyfunction!(frost_raw_commitments, m)?)?;
    m.add_function(wrap_pyfunction!(frost_raw_share, m)?)?;
    Ok(())
}
