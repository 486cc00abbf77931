//! Build script.
//!
//! 1. Gives the shared library a SONAME so that consumers record
//!    `libera.so.0.1` instead of an absolute path (the cargo-c convention: for
//!    a 0.x version the minor number is the compatibility level).
//! 2. With the `cuda` feature, compiles the CUDA kernels (`src/kernels/cuda/*.cu`)
//!    with nvcc into one fatbinary that `src/kernels/cuda/mod.rs` embeds:
//!    native code for sm_90 (H100/H200) and PTX for compute_80, which the
//!    driver compiles for any GPU from sm_80 on (A100 and newer). nvcc is found
//!    through `ERA_NVCC`, `NVCC`, `CUDA_HOME`/`CUDA_PATH` (`bin/nvcc`), then
//!    `PATH`; `scripts/cuda.sh toolchain` installs NVIDIA's compiler from PyPI
//!    wheels where no CUDA toolkit is installed (and prints the path of its nvcc). `ERA_CUDA_GENCODE` replaces
//!    the code targets (space-separated nvcc `-gencode` values, e.g.
//!    `arch=compute_90,code=sm_90 arch=compute_100,code=sm_100`).
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_else(|_| "0".into());
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" || target_os == "android" || target_os.ends_with("bsd") {
        let soname = if major == "0" { format!("libera.so.0.{minor}") } else { format!("libera.so.{major}") };
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        build_cuda();
    }
}

fn find_nvcc() -> PathBuf {
    for var in ["ERA_NVCC", "NVCC"] {
        println!("cargo:rerun-if-env-changed={var}");
        if let Some(p) = std::env::var_os(var) {
            return PathBuf::from(p);
        }
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
        if let Some(p) = std::env::var_os(var) {
            let nvcc = Path::new(&p).join("bin").join("nvcc");
            if nvcc.exists() {
                return nvcc;
            }
        }
    }
    PathBuf::from("nvcc")
}

fn build_cuda() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("src/kernels/cuda");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("src/kernels/cuda exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|x| x.to_str()), Some("cu" | "cuh" | "h")))
        .collect();
    sources.sort();
    for s in &sources {
        println!("cargo:rerun-if-changed={}", s.display());
    }
    // one translation unit, so that all kernels live in one module image
    let unity = out.join("era_kernels.cu");
    let body: String = sources
        .iter()
        .filter(|p| p.extension().and_then(|x| x.to_str()) == Some("cu"))
        .map(|p| format!("#include \"{}\"\n", p.display()))
        .collect();
    std::fs::write(&unity, body).expect("write the kernels' translation unit");
    println!("cargo:rerun-if-env-changed=ERA_CUDA_GENCODE");
    let gencode = std::env::var("ERA_CUDA_GENCODE").unwrap_or_else(|_| "arch=compute_90,code=sm_90 arch=compute_80,code=compute_80".into());
    let nvcc = find_nvcc();
    let fatbin = out.join("era_kernels.fatbin");
    // The image depends only on the sources, the targets and the compiler: keep one per
    // content in the target directory, so that the debug, release, test and clippy builds
    // of the same sources run nvcc once (ptxas takes a while on the token kernels).
    let mut key = std::collections::hash_map::DefaultHasher::new();
    for s in &sources {
        std::hash::Hash::hash(&std::fs::read(s).expect("read a CUDA source"), &mut key);
    }
    std::hash::Hash::hash(&(gencode.as_str(), nvcc.as_os_str()), &mut key);
    let cache = out.ancestors().nth(4).map(|t| t.join("era-cuda-cache").join(format!("{:016x}.fatbin", std::hash::Hasher::finish(&key))));
    if let Some(c) = cache.as_ref().filter(|c| c.exists()) {
        std::fs::copy(c, &fatbin).expect("copy the cached kernel image");
        return;
    }
    let mut cmd = Command::new(&nvcc);
    cmd.arg("-fatbin").arg("-O3").arg("-std=c++17").arg("-I").arg(&dir).arg("-o").arg(&fatbin).arg(&unity);
    for g in gencode.split_whitespace() {
        cmd.arg("-gencode").arg(g);
    }
    let status = cmd.status().unwrap_or_else(|e| {
        panic!(
            "the cuda feature needs NVIDIA's CUDA compiler, but {} could not be run ({e}); \
             set ERA_NVCC to an nvcc, or install one from PyPI wheels with \
             `ERA_NVCC=$(scripts/cuda.sh toolchain) cargo build --features cuda` (from the repository root)",
            nvcc.display()
        )
    });
    assert!(status.success(), "nvcc failed to compile the CUDA kernels ({status})");
    if let Some(c) = cache {
        // best effort: a failed copy only means the next build compiles again
        if c.parent().map(std::fs::create_dir_all).is_some() {
            let _ = std::fs::copy(&fatbin, &c);
        }
    }
}
