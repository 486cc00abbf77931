//! `EraStatus`: the status of every fallible call, and the one table from
//! which its names and the conversion from [`ErrorKind`] are generated.
//!
//! The enum itself is written out (cbindgen reads it to generate `era.h`);
//! the table below is checked against it at compile time: every table row
//! names a variant with the row's number, and the generated `match`es are
//! exhaustive over both the variants and the [`ErrorKind`]s. To add a
//! status, see CONTRIBUTING.md ("Add a status").

use crate::error::ErrorKind;

/// Status of every fallible call. The numbers are part of the ABI and are never reused.
#[repr(i32)]
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EraStatus {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullPointer = 1,
    /// A configuration value is out of range, NaN or missing; unknown head kind; bad struct_size.
    InvalidConfig = 2,
    /// The target entropy cannot be met (Gaussian: H0 + delta above D*(log_std_max + 0.5*ln(2*pi*e));
    /// softmax: H0 outside [1 + ln(ln(tau)/tau), 1 + ln(n*ln(tau)/tau)]).
    InfeasibleTarget = 3,
    /// Wrong rank, mismatched shapes, wrong last dimension, negative or overflowing extents.
    InvalidShape = 4,
    /// An element type the argument does not accept (or mixed float types where one is required).
    UnsupportedDtype = 5,
    /// A buffer on a device this build cannot compute on (e.g. CUDA memory in a CPU build).
    UnsupportedDevice = 6,
    /// Bad strides, misaligned data, NULL data with elements, or overlapping outputs.
    InvalidLayout = 7,
    /// A data value out of range: a token label outside [0, V), a response id below -1, a scale <= 0.
    InvalidValue = 8,
    /// The operation does not exist for this kind of head.
    WrongHeadKind = 9,
    /// Malformed JSON, invalid UTF-8, or a document that is not a saved era head.
    Json = 10,
    /// A caller-provided buffer is too small.
    BufferTooSmall = 11,
    /// Another invalid scalar argument (NaN delta, non-finite mean entropy, low >= high).
    InvalidArgument = 12,
    /// The scratch memory the call needs (per-row buffers, a copy of an input that an
    /// output overlaps) could not be allocated, e.g. for a broadcast input of huge extent.
    OutOfMemory = 13,
    /// CUDA buffers in a build with CUDA support, on a machine where CUDA cannot be used
    /// (no driver, no device of that ordinal, a driver too old for the kernels, or a
    /// failed launch); `era_cuda_available` says in advance whether CUDA is usable.
    DeviceUnavailable = 14,
    /// The CUDA device hit an error that leaves its context unusable for the rest of the
    /// process (CUDA's sticky errors: an illegal or misaligned memory access, a kernel that
    /// trapped or timed out, an uncorrectable ECC error), found by this call or left by
    /// earlier work on the device. Every later CUDA call in the process fails; restart it.
    DeviceFault = 15,
    /// `stream` is not a stream of the tensors' device (a stream of another GPU, of another
    /// context, or one that was destroyed). Nothing was launched; the device is usable.
    InvalidStream = 16,
    /// A bug in era: a panic was caught at the ABI boundary. Please report it.
    Internal = 99,
}

/// Generates, from one table of `Variant = number, "C name", ErrorKind...;`
/// rows, the status names, the list of all statuses, the lookup by number,
/// the conversion from [`ErrorKind`], and compile-time checks that the table
/// and [`EraStatus`] agree.
macro_rules! status_table {
    ($($variant:ident = $code:literal, $name:literal $(, $kind:ident)*;)*) => {
        impl EraStatus {
            /// Every status, in the order of the table.
            pub const ALL: &'static [EraStatus] = &[$(EraStatus::$variant),*];

            /// The C name of the status, NUL-terminated (e.g. "ERA_STATUS_OK\0").
            pub(crate) fn c_name(self) -> &'static str {
                match self {
                    $(EraStatus::$variant => concat!($name, "\0"),)*
                }
            }

            /// The C name of the status (e.g. "ERA_STATUS_OK").
            pub fn name(self) -> &'static str {
                let s = self.c_name();
                &s[..s.len() - 1]
            }

            /// The status with ABI number `code`, if there is one.
            pub fn from_code(code: i32) -> Option<EraStatus> {
                match code {
                    $($code => Some(EraStatus::$variant),)*
                    _ => None,
                }
            }
        }

        // every row's number is its variant's number
        const _: () = { $(assert!(EraStatus::$variant as i32 == $code);)* };

        impl From<ErrorKind> for EraStatus {
            fn from(k: ErrorKind) -> Self {
                match k {
                    $($(ErrorKind::$kind => EraStatus::$variant,)*)*
                }
            }
        }
    };
}

status_table! {
    Ok = 0, "ERA_STATUS_OK";
    NullPointer = 1, "ERA_STATUS_NULL_POINTER", NullPointer;
    InvalidConfig = 2, "ERA_STATUS_INVALID_CONFIG", InvalidConfig;
    InfeasibleTarget = 3, "ERA_STATUS_INFEASIBLE_TARGET", InfeasibleTarget;
    InvalidShape = 4, "ERA_STATUS_INVALID_SHAPE", InvalidShape;
    UnsupportedDtype = 5, "ERA_STATUS_UNSUPPORTED_DTYPE", UnsupportedDtype;
    UnsupportedDevice = 6, "ERA_STATUS_UNSUPPORTED_DEVICE", UnsupportedDevice;
    InvalidLayout = 7, "ERA_STATUS_INVALID_LAYOUT", InvalidLayout;
    InvalidValue = 8, "ERA_STATUS_INVALID_VALUE", InvalidValue;
    WrongHeadKind = 9, "ERA_STATUS_WRONG_HEAD_KIND", WrongHeadKind;
    Json = 10, "ERA_STATUS_JSON", Json;
    BufferTooSmall = 11, "ERA_STATUS_BUFFER_TOO_SMALL", BufferTooSmall;
    InvalidArgument = 12, "ERA_STATUS_INVALID_ARGUMENT", InvalidArgument;
    OutOfMemory = 13, "ERA_STATUS_OUT_OF_MEMORY", OutOfMemory;
    DeviceUnavailable = 14, "ERA_STATUS_DEVICE_UNAVAILABLE", DeviceUnavailable;
    DeviceFault = 15, "ERA_STATUS_DEVICE_FAULT", DeviceFault;
    InvalidStream = 16, "ERA_STATUS_INVALID_STREAM", InvalidStream;
    Internal = 99, "ERA_STATUS_INTERNAL", Internal;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capi::era_status_str;

    fn name_of(code: i32) -> String {
        unsafe { std::ffi::CStr::from_ptr(era_status_str(code)) }.to_str().unwrap().to_string()
    }

    #[test]
    fn every_status_has_its_name_and_number() {
        for &s in EraStatus::ALL {
            assert_eq!(name_of(s as i32), s.name());
            assert_eq!(EraStatus::from_code(s as i32), Some(s));
            assert!(s.name().starts_with("ERA_STATUS_"));
        }
        for code in [-1, 17, 98, 100, i32::MIN, i32::MAX] {
            assert_eq!(name_of(code), "ERA_STATUS_UNKNOWN");
            assert_eq!(EraStatus::from_code(code), None);
        }
    }

    #[test]
    fn error_kinds_map_to_distinct_statuses() {
        use ErrorKind::*;
        let kinds = [
            NullPointer,
            InvalidConfig,
            InfeasibleTarget,
            InvalidShape,
            UnsupportedDtype,
            UnsupportedDevice,
            InvalidLayout,
            InvalidValue,
            WrongHeadKind,
            Json,
            BufferTooSmall,
            InvalidArgument,
            OutOfMemory,
            DeviceUnavailable,
            DeviceFault,
            InvalidStream,
            Internal,
        ];
        let statuses: std::collections::HashSet<EraStatus> = kinds.iter().map(|&k| EraStatus::from(k)).collect();
        assert_eq!(statuses.len(), kinds.len());
        assert!(!statuses.contains(&EraStatus::Ok));
        assert_eq!(statuses.len() + 1, EraStatus::ALL.len());
    }
}
