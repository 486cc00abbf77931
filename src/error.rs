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
    /// CUDA buffers where CUDA cannot be used (no driver or device, a failed launch).
    DeviceUnavailable,
    /// The CUDA device hit an error that leaves its context unusable for the rest
    /// of the process (an illegal address, a kernel that trapped: a sticky error).
    DeviceFault,
    /// A CUDA stream that belongs to another device (or context) than the tensors'.
    InvalidStream,
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
    /// Creates an error of `kind` with `message`, in which every number
    /// written out with more than 20 digits (how `{}` prints `1e300` or
    /// `1e-300`) is shortened to its shortest exact form (`1e300`).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: compact_numbers(message.into()) }
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

/// Rewrites decimal numbers of more than 20 digits (no integer type of the
/// library has that many) as the shortest string that reads back as the same
/// f64, e.g. `1e300` instead of a 301-digit expansion.
fn compact_numbers(msg: String) -> String {
    let digits = |t: &str| t.bytes().filter(u8::is_ascii_digit).count();
    if !msg.as_bytes().windows(21).any(|w| w.iter().all(|b| b.is_ascii_digit() || *b == b'.')) {
        return msg;
    }
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg.as_str();
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(tail.len());
        let token = tail[..end].trim_end_matches('.');
        match token.parse::<f64>() {
            Ok(v) if digits(token) > 20 => out.push_str(&format!("{v:?}")),
            _ => out.push_str(token),
        }
        rest = &tail[token.len()..];
    }
    out.push_str(rest);
    out
}

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
    fn long_numbers_are_shortened() {
        let e = Error::new(ErrorKind::InvalidConfig, format!("tau must be finite, got {} and {}, [{}, {}]", 1e300, 1e-300, 2.5, -3.0e25));
        assert_eq!(e.message(), "tau must be finite, got 1e300 and 1e-300, [2.5, -3e25]");
        let e = Error::new(ErrorKind::InvalidValue, format!("labels[3] = {} is outside [0, {})", i64::MAX, u64::MAX));
        assert_eq!(e.message(), "labels[3] = 9223372036854775807 is outside [0, 18446744073709551615)");
        let e = Error::new(ErrorKind::InvalidValue, "0.30000000000000004 stays");
        assert_eq!(e.message(), "0.30000000000000004 stays");
    }

    #[test]
    fn display_is_the_message() {
        let e = Error::new(ErrorKind::InvalidConfig, "tau must be >= e, got 2");
        assert_eq!(e.to_string(), "tau must be >= e, got 2");
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert_eq!(e.message(), "tau must be >= e, got 2");
    }
}
