//! Links the torch build of `baton-worker` so it runs without `LD_LIBRARY_PATH`.
//!
//! Does nothing unless the `torch` feature is on: the default build never needs libtorch. With
//! it, tch's `torch-sys` has already found libtorch (via `LIBTORCH_USE_PYTORCH=1` and the venv's
//! python, DESIGN.md §7) and tells us its lib directory as `DEP_TCH_LIBTORCH_LIB`. Here we check
//! that it is libtorch 2.13.0 and add what torch-sys cannot pass on to binaries: an rpath to that
//! directory (the wheel's own rpaths then find the nvidia libraries) and `--no-as-needed -ltorch`,
//! so libtorch_cuda is loaded and `cuda:N` devices work when a GPU is present.

use std::path::{Path, PathBuf};

const TORCH_VERSION: &str = "2.13.0";
const SETUP: &str = "run `deploy/setup/libtorch.sh` (or `make torch`), then build with \
    `LIBTORCH_USE_PYTORCH=1 PATH=~/.cache/baton/torch-venv/bin:$PATH cargo build -p baton-worker --features torch`";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if std::env::var_os("CARGO_FEATURE_TORCH").is_none() {
        return;
    }
    let lib = match std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
        Some(lib) => PathBuf::from(lib),
        None => fail("tch did not report where libtorch is"),
    };
    if !lib.join("libtorch.so").exists() {
        fail(&format!("no libtorch.so in {}", lib.display()));
    }
    check_version(&lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-L{}", lib.display());
    println!("cargo:rustc-link-arg=-ltorch");
}

/// The PyPI wheel's `torch/version.py` (next to `torch/lib`) says which libtorch this is.
fn check_version(lib: &Path) {
    let file = lib.join("../version.py");
    let Ok(text) = std::fs::read_to_string(&file) else {
        // A plain libtorch download (LIBTORCH=...) has `build-version` instead; torch-sys checked it.
        return;
    };
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("__version__ = "))
        .map(|v| v.trim().trim_matches('\'').trim_matches('"'))
        .unwrap_or("unknown");
    let base = version.split('+').next().unwrap_or(version);
    if base != TORCH_VERSION {
        fail(&format!(
            "libtorch in {} is {version}, baton-worker needs {TORCH_VERSION}",
            lib.display()
        ));
    }
}

fn fail(problem: &str) -> ! {
    panic!("baton-worker --features torch: {problem}; {SETUP}");
}
