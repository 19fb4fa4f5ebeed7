//! synod core: thin PyO3 bindings over audited threshold-signature crates.
//!
//! Every function takes and returns bytes produced by the crates' own
//! serializers. Errors are raised as `CoreError((kind, culprits, message))`;
//! the Python layer (`synod.crypto.errors`) turns them into typed exceptions.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

mod ecdsa;
mod frost;

create_exception!(_core, CoreError, PyException, "Error raised by the Rust core: args = (kind, culprits, message).");

/// Build a `CoreError` carrying a machine-readable kind and the culprits' identifiers.
pub(crate) fn core_err(kind: &str, culprits: Vec<u16>, message: impl Into<String>) -> PyErr {
    CoreError::new_err((kind.to_string(), culprits, message.into()))
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("CoreError", m.py().get_type::<CoreError>())?;
    frost::register(m)?;
    ecdsa::register(m)?;
    Ok(())
}
