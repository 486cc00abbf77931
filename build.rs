//! Build script: gives the shared library a SONAME so that consumers record
//! `libera.so.0.1` instead of an absolute path (the cargo-c convention: for a
//! 0.x version the minor number is the compatibility level).
fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_else(|_| "0".into());
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" || target_os == "android" || target_os.ends_with("bsd") {
        let soname = if major == "0" { format!("libera.so.0.{minor}") } else { format!("libera.so.{major}") };
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
