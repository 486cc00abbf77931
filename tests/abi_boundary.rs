//! Structural checks of the C ABI, read from the sources and the header:
//! every exported function runs its body inside `ffi_boundary!`, the header
//! declares exactly the exported functions, and the statuses of the header
//! are exactly those of the library.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use era::capi::{era_status_str, EraStatus};

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every Rust source file of the crate, as (path, text).
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push((p.display().to_string(), std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    out
}

/// The exported functions of a source text: (name, first tokens of the body).
fn exports(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("extern \"C\" fn ") {
        let after = &rest[i + "extern \"C\" fn ".len()..];
        let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        // the body starts at the first `{` after the parameter list closes
        let mut depth = 0usize;
        let mut body_start = None;
        for (j, c) in after.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                '{' if depth == 0 => {
                    body_start = Some(j + 1);
                    break;
                }
                _ => {}
            }
        }
        let start = body_start.expect("a function body");
        let head: String = after[start..].trim_start().chars().take(40).collect();
        found.push((name, head));
        rest = &after[start..];
    }
    found
}

/// The functions declared by `era.h`.
fn header_functions(h: &str) -> BTreeSet<String> {
    // drop the comments, which mention functions too
    let mut code = String::new();
    let mut rest = h;
    while let Some(i) = rest.find("/*") {
        code.push_str(&rest[..i]);
        rest = rest[i..].find("*/").map_or("", |j| &rest[i + j + 2..]);
    }
    code.push_str(rest);
    // and the preprocessor lines
    let code: String = code.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    let mut names = BTreeSet::new();
    for stmt in code.split(';') {
        let s = stmt.trim();
        if let Some(open) = s.find("era_") {
            let name: String = s[open..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if s[open + name.len()..].trim_start().starts_with('(') {
                names.insert(name);
            }
        }
    }
    names
}

#[test]
fn every_export_runs_inside_the_boundary_macro() {
    let mut all = BTreeSet::new();
    for (path, text) in sources() {
        assert!(!text.contains("#[export_name"), "{path}: export through #[no_mangle] extern \"C\" fn era_* only");
        let no_mangle = text.matches("#[no_mangle]").count();
        let exported = exports(&text);
        assert_eq!(no_mangle, exported.len(), "{path}: every #[no_mangle] item must be an extern \"C\" fn");
        for (name, head) in exported {
            assert!(name.starts_with("era_"), "{path}: exported function {name} is not named era_*");
            assert!(path.contains("/src/capi/"), "{path}: {name} is exported outside src/capi");
            assert!(head.starts_with("ffi_boundary!"), "{path}: {name} does not start its body with ffi_boundary!: {head:?}");
            assert!(all.insert(name.clone()), "{name} is exported twice");
        }
    }
    assert_eq!(all, header_functions(&read("include/era.h")), "exported functions and era.h disagree");
}

#[test]
fn header_statuses_are_the_library_statuses() {
    let h = read("include/era.h");
    let start = h.find("enum EraStatus").expect("EraStatus in era.h");
    let body = &h[start..start + h[start..].find('}').unwrap()];
    let mut header = BTreeMap::new();
    for line in body.lines() {
        let line = line.trim().trim_end_matches(',');
        if let Some((name, num)) = line.split_once(" = ") {
            header.insert(name.trim().to_string(), num.trim().parse::<i32>().unwrap());
        }
    }
    let library: BTreeMap<String, i32> = EraStatus::ALL.iter().map(|&s| (s.name().to_string(), s as i32)).collect();
    assert_eq!(header, library);
    for (name, &code) in &header {
        let got = unsafe { std::ffi::CStr::from_ptr(era_status_str(code)) };
        assert_eq!(got.to_str().unwrap(), name);
    }
}

#[test]
fn the_header_exposes_only_era_names() {
    let h = read("include/era.h");
    for line in h.lines() {
        if let Some(rest) = line.strip_prefix("#define ") {
            let name = rest.split_whitespace().next().unwrap();
            assert!(name.starts_with("ERA_"), "era.h defines {name}, which is not part of the ABI");
        }
    }
}
