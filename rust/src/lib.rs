//! synod core: thin PyO3 bindings over audited threshold-signature crates.
//!
//! Every function takes and returns bytes produced by the crates' own
//! serializers. Errors are raised as `CoreError((kind, culprits, message))`;
//! the Python layer (`synod.crypto.errors`) turns them into typed exceptions.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes};

mod ecdsa;
mod frost;

create_exception!(
    _core,
    CoreError,
    PyException,
    "Error raised by the Rust core: args = (kind, culprits, message)."
);

/// Build a `CoreError` carrying a machine-readable kind and the culprits' identifiers.
pub(crate) fn core_err(kind: &str, culprits: Vec<u16>, message: impl Into<String>) -> PyErr {
    CoreError::new_err((kind.to_string(), culprits, message.into()))
}

/// Bytes handed in from Python, copied in one step. (pyo3 extracts a `Vec<u8>` item by
/// item, which for a 16 MiB peer message costs most of a second.)
pub(crate) struct Raw(pub Vec<u8>);

impl<'py> FromPyObject<'py> for Raw {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(b) = ob.downcast::<PyBytes>() {
            return Ok(Raw(b.as_bytes().to_vec()));
        }
        if let Ok(b) = ob.downcast::<PyByteArray>() {
            return Ok(Raw(b.to_vec()));
        }
        Err(core_err("invalid_parameters", vec![], "expected bytes"))
    }
}

impl std::ops::Deref for Raw {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// Run one entry point so that a panic (a bug in this glue or in a crate) becomes a
/// `CoreError("internal", ...)` instead of pyo3's `PanicException`, which derives from
/// `BaseException` and would escape every `except Exception`. The panic payload is not
/// copied into the error: it may describe secret values.
pub(crate) fn guarded<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(_) => Err(core_err(
            "internal",
            vec![],
            "internal error in the core (a bug: please report it)",
        )),
    }
}

/// Panics are caught by [`guarded`]; the hook only names where, never the payload.
fn quiet_panic_hook(info: &std::panic::PanicHookInfo<'_>) {
    match info.location() {
        Some(loc) => eprintln!(
            "synod core: internal error at {}:{}",
            loc.file(),
            loc.line()
        ),
        None => eprintln!("synod core: internal error"),
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("CoreError", m.py().get_type::<CoreError>())?;
    std::panic::set_hook(Box::new(quiet_panic_hook));
    frost::register(m)?;
    ecdsa::register(m)?;
    Ok(())
}
