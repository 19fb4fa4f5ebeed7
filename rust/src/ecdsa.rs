//! Threshold ECDSA (CGGMP21) over secp256k1: thin glue over the audited `cggmp21` crate.
//!
//! Every interactive protocol (aux info generation, threshold keygen, presigning,
//! interactive signing) is the crate's own async protocol wrapped into a synchronous
//! `round_based` state machine, driven step by step from Python through one class,
//! [`EcdsaSession`]. Messages, key material, presignatures and partial signatures cross
//! the boundary as the crate's serde structures encoded with `serde_json`; signatures
//! cross as 64-byte `r || s` (low-s).
//!
//! Indices: at this boundary every party is named by its *keygen* index. For signing and
//! presigning the crate numbers the signers `0..t`; the session maps both ways (incoming
//! senders, outgoing recipients and blamed culprits).
//!
//! Choices fixed here: curve secp256k1, `SecurityLevel128`, SHA-256 as the protocols'
//! internal digest (the crate's defaults), SLIP-10 derivation, which for secp256k1
//! non-hardened paths is BIP32 CKDpub.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};

use cggmp21::generic_ec::{NonZero, Point, Scalar};
use cggmp21::hd_wallet::{self, ExtendedPublicKey, HdWallet, NonHardenedIndex, Slip10};
use cggmp21::key_share::{AnyKeyShare, AuxInfo, IncompleteKeyShare, KeyShare};
use cggmp21::round_based::state_machine::{ProceedResult, StateMachine};
use cggmp21::round_based::{Incoming, MessageDestination, MessageType, MsgId};
use cggmp21::security_level::SecurityLevel128;
use cggmp21::supported_curves::Secp256k1;
use cggmp21::{
    DataToSign, ExecutionId, PartialSignature, PregeneratedPrimes, Presignature, Signature,
};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rand_core::{OsRng, RngCore};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::core_err;

/// Owned bytes that PyO3 hands to Python as `bytes` (a bare `Vec<u8>` would become a list).
type Bytes = Cow<'static, [u8]>;

type E = Secp256k1;
type L = SecurityLevel128;
type D = sha2::Sha256;

type AuxMsg = cggmp21::key_refresh::msg::aux_only::Msg<D, L>;
type KeygenMsg = cggmp21::keygen::msg::threshold::Msg<E, L, D>;
type SigningMsg = cggmp21::signing::msg::Msg<E, D>;

/// Upper bound on `n`: keeps every index a `u16` and the crate's vectors small.
const MAX_PARTIES: u16 = 1000;

/// Longest string in a protocol message. Big integers cross as hex strings; every integer
/// the crate's proofs produce at this security level is below 2^(ℓ'+ε)·N·N̂ with ℓ' = 848,
/// ε = 230 and both moduli of 8 × 384 = 3072 bits (7,222 bits; the largest seen in practice
/// are the factoring proof's responses, 2^(ℓ+ε)·N·N̂, and Paillier ciphertexts mod N²).
/// A longer string is refused before the crate sees it: a megabyte-long integer would
/// otherwise cost seconds of modular arithmetic. (+2: a sign and a rounding digit.)
const MAX_MESSAGE_STRING: usize = {
    use cggmp21::security_level::{KeygenSecurityLevel, SecurityLevel};
    (L::ELL_PRIME + L::EPSILON + 16 * L::SECURITY_BITS as usize) / 4 + 2
};

/// Longest array in a protocol message: per-party vectors (at most `MAX_PARTIES`) and the
/// proofs' repetitions (128 at this security level).
const MAX_MESSAGE_ARRAY: usize = 1024;

/// Most fields in one object of a protocol message (the crate's structs have a handful).
const MAX_MESSAGE_FIELDS: usize = 64;

/// Check every string, array and object of a decoded message against the bounds above.
fn check_json_bounds(root: &serde_json::Value) -> Result<(), String> {
    use serde_json::Value;
    let mut stack = vec![root];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) if s.len() > MAX_MESSAGE_STRING => {
                return Err(format!(
                    "a string of {} bytes (at most {MAX_MESSAGE_STRING})",
                    s.len()
                ));
            }
            Value::Array(a) if a.len() > MAX_MESSAGE_ARRAY => {
                return Err(format!(
                    "an array of {} items (at most {MAX_MESSAGE_ARRAY})",
                    a.len()
                ));
            }
            Value::Object(o) if o.len() > MAX_MESSAGE_FIELDS => {
                return Err(format!(
                    "an object of {} fields (at most {MAX_MESSAGE_FIELDS})",
                    o.len()
                ));
            }
            Value::Array(a) => stack.extend(a.iter()),
            Value::Object(o) => stack.extend(o.values()),
            _ => {}
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Encoding helpers
// ---------------------------------------------------------------------------

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> PyResult<T> {
    serde_json::from_slice(bytes).map_err(|e| core_err("decode", vec![], format!("{what}: {e}")))
}

fn encode<T: Serialize>(what: &str, value: &T) -> PyResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| core_err("protocol", vec![], format!("{what}: {e}")))
}

fn point_from_sec1(what: &str, bytes: &[u8]) -> PyResult<NonZero<Point<E>>> {
    if bytes.len() != 33 {
        return Err(core_err(
            "decode",
            vec![],
            format!("{what}: expected 33-byte compressed SEC1 point"),
        ));
    }
    Point::<E>::from_bytes(bytes)
        .ok()
        .and_then(NonZero::from_point)
        .ok_or_else(|| {
            core_err(
                "decode",
                vec![],
                format!("{what}: not a valid non-identity point"),
            )
        })
}

fn point_to_sec1(p: &Point<E>) -> Vec<u8> {
    p.to_bytes(true).as_bytes().to_vec()
}

fn chain_code(what: &str, bytes: &[u8]) -> PyResult<hd_wallet::ChainCode> {
    bytes.try_into().map_err(|_| {
        core_err(
            "decode",
            vec![],
            format!("{what}: chain code must be 32 bytes"),
        )
    })
}

/// The message to sign is a 32-byte prehash (SHA-256, keccak256, ... chosen by the caller).
fn data_to_sign(digest: &[u8]) -> PyResult<DataToSign<E>> {
    if digest.len() != 32 {
        return Err(core_err(
            "invalid_parameters",
            vec![],
            "digest must be exactly 32 bytes",
        ));
    }
    Ok(DataToSign::from_scalar(Scalar::from_be_bytes_mod_order(
        digest,
    )))
}

fn signature_from_bytes(bytes: &[u8]) -> PyResult<Signature<E>> {
    Signature::read_from_slice(bytes).ok_or_else(|| {
        core_err(
            "decode",
            vec![],
            "signature: expected 64 bytes r || s with 0 < r, s < n",
        )
    })
}

fn signature_to_bytes(sig: &Signature<E>) -> Vec<u8> {
    let mut out = vec![0u8; Signature::<E>::serialized_len()];
    sig.write_to_slice(&mut out);
    out
}

/// Non-hardened BIP32 indices only: hardened derivation needs the secret key, which nobody holds.
fn derivation_path(path: &[u32]) -> PyResult<Vec<NonHardenedIndex>> {
    path.iter()
        .map(|&i| {
            NonHardenedIndex::try_from(i).map_err(|_| {
                core_err(
                    "invalid_parameters",
                    vec![],
                    format!("path index {i} is hardened; only non-hardened derivation is possible"),
                )
            })
        })
        .collect()
}

fn extended_public_key(public_key: &[u8], chain: &[u8]) -> PyResult<ExtendedPublicKey<E>> {
    Ok(ExtendedPublicKey {
        public_key: *point_from_sec1("public key", public_key)?,
        chain_code: chain_code("chain code", chain)?,
    })
}

// ---------------------------------------------------------------------------
// Blame extraction
// ---------------------------------------------------------------------------

/// The crate keeps its abort reasons private but puts the blamed parties in their `Debug`
/// output (`AbortBlame { faulty_party, .. }`, `parties: [..]`, lists of `(party, msg_id, ..)`
/// tuples, or a message id). Read them back from there; unknown shapes yield no culprits.
fn blame_from_debug(debug: &str, msg_senders: &HashMap<MsgId, u16>) -> Vec<u16> {
    fn number_at(s: &str) -> Option<u64> {
        let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    }
    let mut out = Vec::new();
    for key in ["faulty_party: ", "sender: "] {
        for (pos, _) in debug.match_indices(key) {
            if let Some(v) = number_at(&debug[pos + key.len()..]) {
                out.extend(u16::try_from(v).ok());
            }
        }
    }
    for (pos, _) in debug.match_indices("msg_id: ") {
        if let Some(id) = number_at(&debug[pos + "msg_id: ".len()..]) {
            out.extend(msg_senders.get(&id).copied());
        }
    }
    for (pos, _) in debug.match_indices("parties: [") {
        let rest = &debug[pos + "parties: [".len()..];
        let list = &rest[..rest.find(']').unwrap_or(0)];
        out.extend(
            list.split(", ")
                .filter_map(|x| x.trim().parse::<u16>().ok()),
        );
    }
    // Variants holding `Vec<(PartyIndex, MsgId, ..)>`: the first tuple field is the party.
    for variant in [
        "EncProofOfK([",
        "InvalidPsi([",
        "InvalidPsiPrimePrime([",
        "Round1aNotReliable([",
        "Round1NotReliable([",
    ] {
        for (pos, _) in debug.match_indices(variant) {
            let rest = &debug[pos + variant.len()..];
            let mut depth = 0i32;
            for (k, c) in rest.char_indices() {
                match c {
                    '(' | '[' | '{' => {
                        if depth == 0 && c == '(' {
                            if let Some(v) = number_at(&rest[k + 1..]) {
                                out.extend(u16::try_from(v).ok());
                            }
                        }
                        depth += 1;
                    }
                    ')' | ']' | '}' => {
                        depth -= 1;
                        if depth < 0 {
                            break;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

// ---------------------------------------------------------------------------
// Generic driver of a round-based state machine
// ---------------------------------------------------------------------------

/// What a finished protocol hands back to Python.
enum Output {
    Bytes(Vec<u8>),
    Presignature(Box<PresignatureBlob>),
    Object(PyObject),
}

/// A protocol failure as reported by the crate (rendered; blame is extracted by the driver).
struct Failure {
    message: String,
    debug: String,
}

impl Failure {
    fn from_error<Err: std::error::Error>(err: Err) -> Self {
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Failure {
            message,
            debug: format!("{err:?}"),
        }
    }
}

/// A finished protocol's output as the JSON bytes Python keeps (aux info, key shares).
fn json_output<T: serde::Serialize>(value: &T) -> Result<Output, Failure> {
    serde_json::to_vec(value)
        .map(Output::Bytes)
        .map_err(|e| Failure {
            message: e.to_string(),
            debug: String::new(),
        })
}

type Machine<M> = Box<dyn StateMachine<Output = Result<Output, Failure>, Msg = M>>;

enum State {
    Running,
    Done(Output),
    Failed { culprits: Vec<u16>, message: String },
}

/// Drives one party's state machine: queues incoming messages until the machine asks for
/// one, collects outgoing messages, and records the output or the failure.
struct Driver<M> {
    machine: Machine<M>,
    /// `parties[local] = keygen index`.
    parties: Vec<u16>,
    me: u16,
    inbox: VecDeque<Incoming<M>>,
    outbox: Vec<(Option<u16>, Vec<u8>)>,
    waiting_for_msg: bool,
    next_msg_id: MsgId,
    msg_senders: HashMap<MsgId, u16>,
    state: State,
}

trait Session {
    fn receive(&mut self, sender: u16, broadcast: bool, msg: &[u8]) -> PyResult<()>;
    fn take_outgoing(&mut self) -> Vec<(Option<u16>, Vec<u8>)>;
    fn is_done(&self) -> bool;
    fn output(&mut self, py: Python<'_>) -> PyResult<PyObject>;
    fn index(&self) -> u16;
    fn parties(&self) -> Vec<u16>;
}

impl<M: Serialize + DeserializeOwned + 'static> Driver<M> {
    fn start(machine: Machine<M>, parties: Vec<u16>, me: u16) -> Self {
        let mut d = Driver {
            machine,
            parties,
            me,
            inbox: VecDeque::new(),
            outbox: Vec::new(),
            waiting_for_msg: false,
            next_msg_id: 0,
            msg_senders: HashMap::new(),
            state: State::Running,
        };
        d.pump();
        d
    }

    fn public(&self, local: u16) -> u16 {
        self.parties[usize::from(local)]
    }

    fn fail(&mut self, culprits_local: Vec<u16>, message: String) {
        let mut culprits: Vec<u16> = culprits_local
            .into_iter()
            .filter(|&j| usize::from(j) < self.parties.len())
            .map(|j| self.public(j))
            .collect();
        culprits.sort_unstable();
        culprits.dedup();
        self.state = State::Failed { culprits, message };
    }

    /// Run the machine until it blocks on a message we do not have yet, or finishes.
    fn pump(&mut self) {
        while matches!(self.state, State::Running) {
            if self.waiting_for_msg {
                let Some(msg) = self.inbox.pop_front() else {
                    return;
                };
                let delivered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.machine.received_msg(msg).is_ok()
                }));
                if !matches!(delivered, Ok(true)) {
                    self.fail(
                        vec![],
                        "state machine refused a message it asked for".into(),
                    );
                    return;
                }
                self.waiting_for_msg = false;
            }
            // A panic inside the crate poisons its state machine: the run fails for good.
            let step =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.machine.proceed()));
            let Ok(step) = step else {
                self.fail(vec![], "internal error in the protocol".into());
                return;
            };
            match step {
                ProceedResult::SendMsg(out) => {
                    let recipient = match out.recipient {
                        MessageDestination::AllParties => None,
                        MessageDestination::OneParty(j) => Some(self.public(j)),
                    };
                    match serde_json::to_vec(&out.msg) {
                        Ok(bytes) => self.outbox.push((recipient, bytes)),
                        Err(e) => {
                            self.fail(vec![], format!("cannot serialize outgoing message: {e}"))
                        }
                    }
                }
                ProceedResult::NeedsOneMoreMessage => self.waiting_for_msg = true,
                ProceedResult::Yielded => {}
                ProceedResult::Output(Ok(out)) => self.state = State::Done(out),
                ProceedResult::Output(Err(f)) => {
                    let culprits = blame_from_debug(&f.debug, &self.msg_senders);
                    self.fail(culprits, f.message);
                }
                ProceedResult::Error(e) => self.fail(vec![], format!("state machine error: {e}")),
            }
        }
    }

    fn failure_err(&self) -> Option<PyErr> {
        match &self.state {
            State::Failed { culprits, message } => {
                Some(core_err("protocol", culprits.clone(), message.clone()))
            }
            _ => None,
        }
    }
}

impl<M: Serialize + DeserializeOwned + 'static> Session for Driver<M> {
    fn receive(&mut self, sender: u16, broadcast: bool, msg: &[u8]) -> PyResult<()> {
        if let Some(err) = self.failure_err() {
            return Err(err);
        }
        if matches!(self.state, State::Done(_)) {
            return Err(core_err(
                "invalid_parameters",
                vec![],
                "protocol already finished",
            ));
        }
        let local = self
            .parties
            .iter()
            .position(|&p| p == sender)
            .ok_or_else(|| {
                core_err(
                    "invalid_parameters",
                    vec![],
                    format!("party {sender} does not take part in this protocol"),
                )
            })?;
        let local = u16::try_from(local).expect("parties fit in u16");
        if local == self.me {
            return Err(core_err(
                "invalid_parameters",
                vec![],
                "a party cannot receive its own message",
            ));
        }
        // An undecodable or oversized message is dropped (the session is unchanged) and its
        // sender named. Sizes are checked on the generic JSON tree, before the crate's types
        // (and their big integers) are built from it.
        let refuse = |why: String| {
            core_err(
                "protocol",
                vec![sender],
                format!("undecodable message from party {sender}: {why}"),
            )
        };
        let tree: serde_json::Value =
            serde_json::from_slice(msg).map_err(|e| refuse(e.to_string()))?;
        check_json_bounds(&tree).map_err(refuse)?;
        let decoded: M = serde_json::from_value(tree).map_err(|e| refuse(e.to_string()))?;
        let id = self.next_msg_id;
        self.next_msg_id += 1;
        self.msg_senders.insert(id, local);
        self.inbox.push_back(Incoming {
            id,
            sender: local,
            msg_type: if broadcast {
                MessageType::Broadcast
            } else {
                MessageType::P2P
            },
            msg: decoded,
        });
        self.pump();
        match self.failure_err() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    fn take_outgoing(&mut self) -> Vec<(Option<u16>, Vec<u8>)> {
        std::mem::take(&mut self.outbox)
    }

    fn is_done(&self) -> bool {
        matches!(self.state, State::Done(_))
    }

    fn output(&mut self, py: Python<'_>) -> PyResult<PyObject> {
        if let Some(err) = self.failure_err() {
            return Err(err);
        }
        // A presignature becomes one Python object, created once: every call returns the
        // same single-use object rather than fresh copies.
        if matches!(self.state, State::Done(Output::Presignature(_))) {
            let State::Done(Output::Presignature(blob)) =
                std::mem::replace(&mut self.state, State::Running)
            else {
                unreachable!("matched above")
            };
            let obj = Py::new(py, EcdsaPresignature { inner: Some(*blob) })?;
            self.state = State::Done(Output::Object(obj.into_any()));
        }
        match &self.state {
            State::Done(Output::Bytes(b)) => Ok(PyBytes::new(py, b).into_any().unbind()),
            State::Done(Output::Object(o)) => Ok(o.clone_ref(py)),
            _ => Err(core_err(
                "invalid_parameters",
                vec![],
                "protocol not finished",
            )),
        }
    }

    fn index(&self) -> u16 {
        self.public(self.me)
    }

    fn parties(&self) -> Vec<u16> {
        self.parties.clone()
    }
}

/// A value that must stay on its thread (a CGGMP state machine: why `EcdsaSession` is
/// `unsendable`), carried into `Python::allow_threads` and back.
///
/// `allow_threads` runs its closure on the calling thread; it only lets the process's other
/// Python threads run meanwhile. So such a value may be used inside it, which this wrapper
/// tells the compiler. What it carries must not touch a Python object.
struct OnThisThread<T>(T);

// SAFETY: only ever moved into a closure that `allow_threads` runs on the same thread
// (`without_gil`), so the value never reaches another thread.
unsafe impl<T> Send for OnThisThread<T> {}

impl<T> OnThisThread<T> {
    fn into_inner(self) -> T {
        self.0
    }
}

/// `f(value)` with the GIL released, on this thread: a protocol step takes up to seconds of
/// CPU, and a member's peer links and control service run on other threads. `f` must not
/// touch a Python object.
fn without_gil<T, R>(py: Python<'_>, value: T, f: impl FnOnce(T) -> R) -> R {
    let carried = OnThisThread((value, f));
    py.allow_threads(move || {
        let (value, f) = carried.into_inner();
        OnThisThread(f(value))
    })
    .into_inner()
}

/// One party's run of a CGGMP21 protocol. Feed it `receive(...)`, drain `outgoing()`,
/// read `output()` once `is_done()`. All indices are keygen indices.
#[pyclass(unsendable, module = "synod._core")]
pub struct EcdsaSession {
    inner: Box<dyn Session>,
}

impl EcdsaSession {
    /// A session whose first steps (up to the first message it waits for) have run.
    fn started<M: Serialize + DeserializeOwned + 'static>(
        py: Python<'_>,
        machine: Machine<M>,
        parties: Vec<u16>,
        me: u16,
    ) -> Self {
        let inner = without_gil(py, machine, |machine| {
            Box::new(Driver::start(machine, parties, me)) as Box<dyn Session>
        });
        EcdsaSession { inner }
    }
}

#[pymethods]
impl EcdsaSession {
    /// Deliver a message from `sender`; `broadcast` says whether it was sent to everyone.
    /// Raises `protocol` if the message is undecodable (naming the sender) or makes the
    /// protocol abort (naming whoever the crate blames).
    fn receive(
        &mut self,
        py: Python<'_>,
        sender: u16,
        broadcast: bool,
        msg: &[u8],
    ) -> PyResult<()> {
        let inner = &mut *self.inner;
        without_gil(py, inner, |inner| {
            crate::guarded(|| inner.receive(sender, broadcast, msg))
        })
    }

    /// Drain the messages produced so far: `(recipient or None for broadcast, bytes)`.
    fn outgoing<'py>(&mut self, py: Python<'py>) -> Vec<(Option<u16>, Bound<'py, PyBytes>)> {
        self.inner
            .take_outgoing()
            .into_iter()
            .map(|(r, m)| (r, PyBytes::new(py, &m)))
            .collect()
    }

    fn is_done(&self) -> bool {
        self.inner.is_done()
    }

    /// Bytes for aux info / incomplete key share / signature (64 bytes); an
    /// `EcdsaPresignature` for presigning. Raises `protocol` if the protocol aborted.
    fn output(&mut self, py: Python<'_>) -> PyResult<PyObject> {
        crate::guarded(|| self.inner.output(py))
    }

    #[getter]
    fn index(&self) -> u16 {
        self.inner.index()
    }

    #[getter]
    fn parties(&self) -> Vec<u16> {
        self.inner.parties()
    }
}

fn all_parties(n: u16) -> Vec<u16> {
    (0..n).collect()
}

fn check_n(i: u16, n: u16) -> PyResult<()> {
    if !(2..=MAX_PARTIES).contains(&n) {
        return Err(core_err(
            "invalid_parameters",
            vec![],
            format!("n must be in 2..={MAX_PARTIES}"),
        ));
    }
    if i >= n {
        return Err(core_err(
            "invalid_parameters",
            vec![],
            format!("index {i} out of range for n = {n}"),
        ));
    }
    Ok(())
}

/// Start auxiliary info generation (Paillier keys + ring-Pedersen parameters) for party `i` of `n`.
#[pyfunction]
fn ecdsa_aux_info_session(
    py: Python<'_>,
    eid: Vec<u8>,
    i: u16,
    n: u16,
    primes: &[u8],
) -> PyResult<EcdsaSession> {
    crate::guarded(|| {
        check_n(i, n)?;
        let primes = load_primes(primes)?;
        let machine: Machine<AuxMsg> = Box::new(
            cggmp21::round_based::state_machine::wrap_protocol(move |party| async move {
                let mut rng = OsRng;
                // Each party precomputes for its own aux info: CRT exponentiation with its
                // Paillier secret (secret, like the rest of the aux info) and the
                // multi-exponentiation tables of every party's ring-Pedersen parameters.
                cggmp21::aux_info_gen(ExecutionId::new(&eid), i, n, primes)
                    .precompute_crt(true)
                    .precompute_multiexp_tables(true)
                    .start(&mut rng, party)
                    .await
                    .map_err(Failure::from_error)
                    .and_then(|aux: AuxInfo<L>| json_output(&aux))
            }),
        );
        Ok(EcdsaSession::started(py, machine, all_parties(n), i))
    })
}

/// Start threshold DKG (`t`-of-`n`, HD-enabled so non-hardened BIP32 derivation works).
#[pyfunction]
fn ecdsa_keygen_session(
    py: Python<'_>,
    eid: Vec<u8>,
    i: u16,
    n: u16,
    t: u16,
) -> PyResult<EcdsaSession> {
    crate::guarded(|| {
        check_n(i, n)?;
        if !(2..=n).contains(&t) {
            return Err(core_err(
                "invalid_parameters",
                vec![],
                format!("threshold must satisfy 2 <= t <= n, got t = {t}, n = {n}"),
            ));
        }
        let machine: Machine<KeygenMsg> = Box::new(
            cggmp21::round_based::state_machine::wrap_protocol(move |party| async move {
                let mut rng = OsRng;
                cggmp21::keygen::<E>(ExecutionId::new(&eid), i, n)
                    .set_threshold(t)
                    .hd_wallet(true)
                    .start(&mut rng, party)
                    .await
                    .map_err(Failure::from_error)
                    .and_then(|share: IncompleteKeyShare<E>| json_output(&share))
            }),
        );
        Ok(EcdsaSession::started(py, machine, all_parties(n), i))
    })
}

/// Check a signer set against a key share; return it sorted (so every signer numbers the
/// others alike whatever order it was given in) and this party's position in it.
fn check_signers(share: &KeyShare<E, L>, signers: &[u16]) -> PyResult<(Vec<u16>, u16)> {
    let t = share.min_signers();
    let n = share.n();
    if signers.len() != usize::from(t) {
        return Err(core_err(
            "invalid_parameters",
            vec![],
            format!("exactly t = {t} signers are needed, got {}", signers.len()),
        ));
    }
    let mut sorted = signers.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != signers.len() {
        return Err(core_err(
            "invalid_parameters",
            vec![],
            "signer indices must be distinct",
        ));
    }
    if let Some(bad) = signers.iter().find(|&&s| s >= n) {
        return Err(core_err(
            "invalid_parameters",
            vec![],
            format!("signer {bad} out of range for n = {n}"),
        ));
    }
    let me = sorted
        .iter()
        .position(|&s| s == share.core.i)
        .ok_or_else(|| {
            core_err(
                "invalid_parameters",
                vec![],
                format!("key share {} is not among the signers", share.core.i),
            )
        })?;
    Ok((sorted, u16::try_from(me).expect("t fits in u16")))
}

fn load_key_share(bytes: &[u8]) -> PyResult<KeyShare<E, L>> {
    decode("key share", bytes)
}

fn epub_of(share: &KeyShare<E, L>) -> PyResult<ExtendedPublicKey<E>> {
    share.extended_public_key().ok_or_else(|| {
        core_err(
            "invalid_parameters",
            vec![],
            "key share was generated without HD support",
        )
    })
}

/// Start presignature generation among `signers` (keygen indices, exactly t of them, any order).
#[pyfunction]
fn ecdsa_presign_session(
    py: Python<'_>,
    eid: Vec<u8>,
    key_share: &[u8],
    signers: Vec<u16>,
) -> PyResult<EcdsaSession> {
    crate::guarded(|| {
        let share = load_key_share(key_share)?;
        let (signers, me) = check_signers(&share, &signers)?;
        let epub = epub_of(&share)?;
        let public = PresignaturePublic {
            index: share.core.i,
            signers: signers.clone(),
            public_key: share.shared_public_key(),
            chain_code: epub.chain_code,
        };
        let parties = signers.clone();
        let machine: Machine<SigningMsg> = Box::new(
            cggmp21::round_based::state_machine::wrap_protocol(move |party| async move {
                let mut rng = OsRng;
                cggmp21::signing(ExecutionId::new(&eid), me, &signers, &share)
                    .generate_presignature(&mut rng, party)
                    .await
                    .map(|presignature| {
                        Output::Presignature(Box::new(PresignatureBlob {
                            presignature,
                            public,
                        }))
                    })
                    .map_err(Failure::from_error)
            }),
        );
        Ok(EcdsaSession::started(py, machine, parties, me))
    })
}

/// Start interactive signing of a 32-byte digest among `signers`, optionally under a
/// non-hardened derivation path. Output: 64-byte low-s `r || s`.
#[pyfunction]
fn ecdsa_sign_session(
    py: Python<'_>,
    eid: Vec<u8>,
    key_share: &[u8],
    signers: Vec<u16>,
    digest: &[u8],
    path: Vec<u32>,
) -> PyResult<EcdsaSession> {
    crate::guarded(|| {
        let share = load_key_share(key_share)?;
        let (signers, me) = check_signers(&share, &signers)?;
        let data = data_to_sign(digest)?;
        let path = derivation_path(&path)?;
        if !path.is_empty() {
            epub_of(&share)?;
        }
        let parties = signers.clone();
        let machine: Machine<SigningMsg> = Box::new(
            cggmp21::round_based::state_machine::wrap_protocol(move |party| async move {
                let mut rng = OsRng;
                let mut builder = cggmp21::signing(ExecutionId::new(&eid), me, &signers, &share);
                if !path.is_empty() {
                    builder = builder
                        .set_derivation_path_with_algo::<Slip10, _>(path)
                        .map_err(Failure::from_error)?;
                }
                builder
                    .sign(&mut rng, party, data)
                    .await
                    .map(|sig| Output::Bytes(signature_to_bytes(&sig.normalize_s())))
                    .map_err(Failure::from_error)
            }),
        );
        Ok(EcdsaSession::started(py, machine, parties, me))
    })
}

// ---------------------------------------------------------------------------
// Primes, key shares, aux info
// ---------------------------------------------------------------------------

fn load_primes(bytes: &[u8]) -> PyResult<PregeneratedPrimes<L>> {
    let primes: PregeneratedPrimes<L> = decode("primes", bytes)?;
    let (p, q) = primes.split();
    // `new` re-checks the sizes the security level requires (deserialization does not).
    PregeneratedPrimes::new(p, q)
        .ok_or_else(|| core_err("decode", vec![], "primes: too small for SecurityLevel128"))
}

/// One safe prime of the size the security level needs, searched with a hash-based CSPRNG
/// seeded once from the OS (the search draws millions of random words).
fn safe_prime() -> cggmp21::rug::Integer {
    use cggmp21::security_level::KeygenSecurityLevel;
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let mut rng = rand_hash::HashRng::<sha2::Sha256, _>::from_seed(udigest::Bytes(seed));
    cggmp21::fast_paillier::utils::generate_safe_prime(&mut rng, 4 * L::SECURITY_BITS)
}

/// Generate a fresh pair of safe primes for aux info generation (tens of seconds): the two
/// primes are searched in parallel threads. Releases the GIL, so several parties' primes
/// can be generated at once.
#[pyfunction]
fn ecdsa_generate_primes(py: Python<'_>) -> PyResult<Bytes> {
    crate::guarded(|| {
        let (p, q) = py.allow_threads(|| {
            std::thread::scope(|scope| {
                let p = scope.spawn(safe_prime);
                let q = safe_prime();
                (p.join(), q)
            })
        });
        let p = p.map_err(|_| core_err("internal", vec![], "prime search failed"))?;
        let primes = PregeneratedPrimes::<L>::new(p, q)
            .ok_or_else(|| core_err("internal", vec![], "generated primes are too small"))?;
        encode("primes", &primes).map(Cow::Owned)
    })
}

/// Validate serialized primes (sizes only; primality is checked by the protocol's proofs).
#[pyfunction]
fn ecdsa_primes_validate(primes: &[u8]) -> PyResult<()> {
    crate::guarded(|| load_primes(primes).map(|_| ()))
}

/// Validate aux info and return `n`.
#[pyfunction]
fn ecdsa_aux_info_info(aux: &[u8]) -> PyResult<u16> {
    crate::guarded(|| {
        let aux: AuxInfo<L> = decode("aux info", aux)?;
        u16::try_from(aux.parties.len())
            .map_err(|_| core_err("decode", vec![], "aux info: too many parties"))
    })
}

type ShareInfo = (u16, u16, u16, Bytes, Option<Bytes>);

fn share_info(core: &cggmp21::key_share::DirtyIncompleteKeyShare<E>) -> ShareInfo {
    let n = u16::try_from(core.public_shares.len()).unwrap_or(u16::MAX);
    let t = core.vss_setup.as_ref().map(|s| s.min_signers).unwrap_or(n);
    (
        core.i,
        n,
        t,
        Cow::Owned(point_to_sec1(&core.shared_public_key)),
        core.chain_code.map(|c| Cow::Owned(c.to_vec())),
    )
}

/// Validate an incomplete key share; return `(i, n, t, public_key, chain_code)`.
#[pyfunction]
fn ecdsa_incomplete_key_share_info(share: &[u8]) -> PyResult<ShareInfo> {
    crate::guarded(|| {
        let share: IncompleteKeyShare<E> = decode("incomplete key share", share)?;
        Ok(share_info(&share))
    })
}

/// Validate a key share; return `(i, n, t, public_key, chain_code)`.
#[pyfunction]
fn ecdsa_key_share_info(share: &[u8]) -> PyResult<ShareInfo> {
    crate::guarded(|| {
        let share = load_key_share(share)?;
        Ok(share_info(&share.core))
    })
}

/// Complete a key share: the crate's `KeyShare::from_parts` checks the two belong together.
#[pyfunction]
fn ecdsa_key_share_from_parts(incomplete: &[u8], aux: &[u8]) -> PyResult<Bytes> {
    crate::guarded(|| {
        let core: IncompleteKeyShare<E> = decode("incomplete key share", incomplete)?;
        let aux: AuxInfo<L> = decode("aux info", aux)?;
        let share = KeyShare::<E, L>::from_parts((core, aux)).map_err(|e| {
            core_err(
                "invalid_parameters",
                vec![],
                format!("key share and aux info do not match: {e}"),
            )
        })?;
        encode("key share", &share).map(Cow::Owned)
    })
}

// ---------------------------------------------------------------------------
// Presignatures, partial signatures, signatures
// ---------------------------------------------------------------------------

/// Public context of a presignature: who made it and under which key, so a partial
/// signature (with or without derivation) can be issued without the key share.
#[derive(Clone, Serialize, Deserialize)]
struct PresignaturePublic {
    index: u16,
    signers: Vec<u16>,
    public_key: NonZero<Point<E>>,
    chain_code: hd_wallet::ChainCode,
}

#[derive(Clone, Serialize, Deserialize)]
struct PresignatureBlob {
    presignature: Presignature<E>,
    public: PresignaturePublic,
}

#[derive(Serialize, Deserialize)]
struct PartialBlob {
    index: u16,
    partial: PartialSignature<E>,
}

/// A presignature, usable exactly once: issuing a partial signature consumes it and a
/// second use raises `presignature_used`. Signing two messages with one presignature
/// leaks the key, so there is no copy: `move_out` hands the bytes over and uses this
/// object up.
#[pyclass(unsendable, module = "synod._core")]
pub struct EcdsaPresignature {
    inner: Option<PresignatureBlob>,
}

impl EcdsaPresignature {
    fn get(&self) -> PyResult<&PresignatureBlob> {
        self.inner
            .as_ref()
            .ok_or_else(|| core_err("presignature_used", vec![], "presignature already used"))
    }
}

#[pymethods]
impl EcdsaPresignature {
    /// Move the presignature out as bytes for a single-use store: this object is used up.
    /// The only way back is `ecdsa_presignature_restore`, which the store calls once, after
    /// erasing the bytes.
    fn move_out<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        crate::guarded(|| {
            let blob = self.get()?;
            let bytes = encode("presignature", blob)?;
            self.inner = None;
            Ok(PyBytes::new(py, &bytes))
        })
    }

    fn is_used(&self) -> bool {
        self.inner.is_none()
    }

    #[getter]
    fn index(&self) -> PyResult<u16> {
        Ok(self.get()?.public.index)
    }

    #[getter]
    fn signers(&self) -> PyResult<Vec<u16>> {
        Ok(self.get()?.public.signers.clone())
    }

    #[getter]
    fn public_key<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(
            py,
            &point_to_sec1(&self.get()?.public.public_key),
        ))
    }

    #[getter]
    fn chain_code<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.get()?.public.chain_code))
    }

    /// Consume the presignature and issue this party's partial signature on a 32-byte digest,
    /// optionally for the child key at a non-hardened `path`.
    fn issue_partial<'py>(
        &mut self,
        py: Python<'py>,
        digest: &[u8],
        path: Vec<u32>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        crate::guarded(|| {
            let data = data_to_sign(digest)?;
            let path = derivation_path(&path)?;
            self.get()?;
            let blob = self.inner.take().expect("checked above");
            let epub = ExtendedPublicKey {
                public_key: *blob.public.public_key,
                chain_code: blob.public.chain_code,
            };
            let presignature = blob
                .presignature
                .set_derivation_path_with_algo::<Slip10, _>(epub, path)?;
            let partial = presignature.issue_partial_signature(data);
            Ok(PyBytes::new(
                py,
                &encode(
                    "partial signature",
                    &PartialBlob {
                        index: blob.public.index,
                        partial,
                    },
                )?,
            ))
        })
    }
}

/// A presignature from the bytes `EcdsaPresignature.move_out` produced. Only the node's
/// store calls this, once per stored presignature, after erasing the stored copy.
#[pyfunction]
fn ecdsa_presignature_restore(data: &[u8]) -> PyResult<EcdsaPresignature> {
    crate::guarded(|| {
        Ok(EcdsaPresignature {
            inner: Some(decode("presignature", data)?),
        })
    })
}

/// Validate a partial signature; return the index of the party that issued it.
#[pyfunction]
fn ecdsa_partial_signature_info(partial: &[u8]) -> PyResult<u16> {
    crate::guarded(|| {
        let blob: PartialBlob = decode("partial signature", partial)?;
        Ok(blob.index)
    })
}

/// Combine partial signatures (one per signer) into a low-s signature and verify it under
/// `public_key` (the derived key when signing under a path). Raises `invalid_signature`
/// when the result does not verify: a partial signature was wrong (the crate cannot say whose).
#[pyfunction]
fn ecdsa_combine<'py>(
    py: Python<'py>,
    partials: Vec<crate::Raw>,
    public_key: &[u8],
    digest: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    crate::guarded(|| {
        let pk = point_from_sec1("public key", public_key)?;
        let data = data_to_sign(digest)?;
        let mut seen = Vec::new();
        let mut parts = Vec::new();
        for p in &partials {
            let blob: PartialBlob = decode("partial signature", p)?;
            if seen.contains(&blob.index) {
                return Err(core_err(
                    "invalid_parameters",
                    vec![blob.index],
                    "two partial signatures from the same party",
                ));
            }
            seen.push(blob.index);
            parts.push(blob.partial);
        }
        if parts.iter().any(|p| p.r != parts[0].r) {
            return Err(core_err(
                "invalid_share",
                vec![],
                "partial signatures come from different presignatures",
            ));
        }
        let sig = PartialSignature::combine(&parts)
            .ok_or_else(|| core_err("invalid_share", vec![], "partial signatures do not combine"))?
            .normalize_s();
        sig.verify(&pk, &data).map_err(|_| {
            core_err(
                "invalid_signature",
                vec![],
                "combined signature does not verify",
            )
        })?;
        Ok(PyBytes::new(py, &signature_to_bytes(&sig)))
    })
}

/// Verify a 64-byte `r || s` signature on a 32-byte digest with the crate's verifier.
#[pyfunction]
fn ecdsa_verify(public_key: &[u8], digest: &[u8], signature: &[u8]) -> PyResult<bool> {
    crate::guarded(|| {
        let pk = point_from_sec1("public key", public_key)?;
        let data = data_to_sign(digest)?;
        let sig = signature_from_bytes(signature)?;
        Ok(sig.verify(&pk, &data).is_ok())
    })
}

/// Recovery id (0 or 1: parity of R.y) of a valid signature, found by trying both parities
/// and checking which recovers `public_key`. Raises `invalid_signature` if neither does.
#[pyfunction]
fn ecdsa_recovery_id(public_key: &[u8], digest: &[u8], signature: &[u8]) -> PyResult<u8> {
    crate::guarded(|| {
        let pk = point_from_sec1("public key", public_key)?;
        let z = data_to_sign(digest)?.to_scalar();
        let sig = signature_from_bytes(signature)?;
        let r_inv = sig.r.invert();
        for v in 0u8..2 {
            let mut enc = [0u8; 33];
            enc[0] = 0x02 | v;
            enc[1..].copy_from_slice(&sig.r.to_be_bytes());
            let Ok(big_r) = Point::<E>::from_bytes(enc) else {
                continue;
            };
            let q = (big_r * *sig.s - Point::<E>::generator() * z) * *r_inv;
            if q == *pk {
                return Ok(v);
            }
        }
        // r = R.x - n (recovery ids 2, 3) happens with probability ~2^-128; not supported.
        Err(core_err(
            "invalid_signature",
            vec![],
            "signature does not recover to the public key",
        ))
    })
}

/// Non-hardened BIP32 (SLIP-10) child of `(public_key, chain_code)` along `path`.
#[pyfunction]
fn ecdsa_derive_public_key<'py>(
    py: Python<'py>,
    public_key: &[u8],
    chain_code: &[u8],
    path: Vec<u32>,
) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    crate::guarded(|| {
        let epub = extended_public_key(public_key, chain_code)?;
        let path = derivation_path(&path)?;
        let child = Slip10::derive_child_public_key_with_path(&epub, path);
        Ok((
            PyBytes::new(py, &point_to_sec1(&child.public_key)),
            PyBytes::new(py, &child.chain_code),
        ))
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<EcdsaSession>()?;
    m.add_class::<EcdsaPresignature>()?;
    m.add_function(wrap_pyfunction!(ecdsa_aux_info_session, m)?)?;
    m.add_function(wrap_pyfunction!(ecdsa_keygen_session, m)?)?;
    m.add_function(wrap_pyfunction!(ecdsa_presign_session, m)?)?;
    m.add_function(wrap_pyfunction!(ecdsa_sign_session, m)?)?;
    m.add_function(wrap_pyfunction!(ecdsa_presignature_restore, m)?)?;
    m.add_function(wrap_pyfunction!(ecdsa_generate_primes, m)?)?;
    m.add_function(wrap_pyfunction!(ecdsa_primes_validate, m)?)?;
    m.add_function(wrap_pyfunction!(ecdsa_aux_info_info, m)?)?;
    m.add_function(wrap_pyfunction!(ecdsa_incomplete_key_share_info, m)?)?;
    m.add_function(wrap_pyfunction!(ecdsa_key_share_info, m)?)?;
    m.add_function(wrap_pyfunction!(ecdsa_key_share_from_parts, m)?)?;
    m.add_function(wrap_pyfunction!(ecdsa_partial_signature_info, m)?)?;
    m.add_function(wrap_pyfunction!(ecdsa_combine, m)?)?;
    m.add_function(wrap_pyfunction!(ecdsa_verify, m)?)?;
    m.add_function(wrap_pyfunction!(ecdsa_recovery_id, m)?)?;
    m.add_function(wrap_pyfunction!(ecdsa_derive_public_key, m)?)?;
    Ok(())
}
