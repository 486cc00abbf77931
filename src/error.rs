//! The error type of the Rust API and its mapping to the C status codes.

use std::fmt;

/// What went wrong, coarsely. Each kind maps to exactly one C status code
/// (see [`crate::capi::EraStatus`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A required pointer was null (C ABI only).
    NullPointer,
    /// A configuration value is out of its valid range, NaN, or missing.
    InvalidConfig,
    /// The target entropy cannot be met with the configured bounds
    /// (Gaussian: `H0 + delta > D*(log_std_max + 0.5*ln(2*pi*e))`;
    /// softmax: `H0` outside `[1 + ln(ln(tau)/tau), 1 + ln(n*ln(tau)/tau)]`).
    InfeasibleTarget,
    /// Wrong rank, mismatched shapes or a wrong last dimension.
    InvalidShape,
    /// An element type that the operation does not accept.
    UnsupportedDtype,
    /// A buffer on a device this build cannot compute on.
    UnsupportedDevice,
    /// Bad strides, misalignment, or an output that overlaps itself.
    InvalidLayout,
    /// A data value that is out of range (token labels, response ids).
    InvalidValue,
    /// The operation does not exist for this kind of head.
    WrongHeadKind,
    /// Malformed or inconsistent JSON.
    Json,
    /// A caller-provided buffer is too small.
    BufferTooSmall,
    /// Any other invalid scalar argument.
    InvalidArgument,
    /// Scratch memory the call needs could not be allocated.
    OutOfMemory,
    /// A bug inside the library (a caught panic).
    Internal,
}

/// The error of every fallible operation: a kind and a human-readable message
/// that names the offending argument and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// Creates an error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into() }
    }

    /// The kind of the error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// The result type of the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand constructors used across the crate.
macro_rules! bail {
    ($kind:ident, $($arg:tt)*) => {
        return Err($crate::error::Error::new($crate::error::ErrorKind::$kind, format!($($arg)*)))
    };
}
pub(crate) use bail;

/// Fails with [`ErrorKind::InvalidShape`] unless `a == b`.
pub(crate) fn check_same_shape(a_name: &str, a: &[usize], b_name: &str, b: &[usize]) -> Result<()> {
    if a != b {
        bail!(InvalidShape, "{a_name} has shape {a:?}, but {b_name} has shape {b:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_message() {
        let e = Error::new(ErrorKind::InvalidConfig, "tau must be >= e, got 2");
        assert_eq!(e.to_string(), "tau must be >= e, got 2");
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert_eq!(e.message(), "tau must be >= e, got 2");
    }
}
