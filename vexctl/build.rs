//! Reads the ioctl ABI header `include/vexfs.h` twice, independently of the Rust definitions
//! (`core/src/abi.rs`, which the kernel module compiles in and `src/abi.rs` re-exports with the
//! ioctl numbers), and writes the test that compares them (only the tests use these files):
//!
//! - `$OUT_DIR/vexfs_bindgen.rs`: bindgen's structs and constants. While generating, bindgen
//!   reports every struct field and every integer and string macro it saw.
//! - `$OUT_DIR/abi_checks.rs`: one test per kind of check, naming every struct, field and constant
//!   of the header: size, alignment, each field's offset and type, each constant's value, and each
//!   `VEXFS_IOC_*` number as printed by a small C program that includes the header (bindgen cannot
//!   expand `_IOW`/`_IOWR`: they use `sizeof`). The program is compiled with the host's C compiler
//!   (the `cc` crate finds it) and run here.
//!
//! Every `#define VEXFS_*` of the header must land in one of these checks: a new macro needs a
//! new kind of check, not silence. When that fails, or bindgen or the C compiler cannot run, the
//! generated test is one that fails with the reason (and the build warns): vexctl itself still
//! builds, for the guest tools, but `cargo test` cannot pass.
//!
//! Needs libclang (Debian: libclang-dev) and a C compiler, as the kernel build does.

use std::collections::BTreeMap;
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use bindgen::callbacks::{FieldInfo, IntKind, ParseCallbacks};

/// What bindgen reported while reading the header.
#[derive(Debug, Default)]
struct Seen {
    /// Struct name -> its fields, in declaration order.
    fields: BTreeMap<String, Vec<String>>,
    int_macros: Vec<String>,
    str_macros: Vec<String>,
}

#[derive(Debug)]
struct Collect(Arc<Mutex<Seen>>);

impl ParseCallbacks for Collect {
    fn int_macro(&self, name: &str, _value: i64) -> Option<IntKind> {
        if name.starts_with("VEXFS_") {
            self.0.lock().unwrap().int_macros.push(name.to_string());
        }
        None
    }

    fn str_macro(&self, name: &str, _value: &[u8]) {
        if name.starts_with("VEXFS_") {
            self.0.lock().unwrap().str_macros.push(name.to_string());
        }
    }

    fn field_visibility(&self, info: FieldInfo<'_>) -> Option<bindgen::FieldVisibilityKind> {
        let mut seen = self.0.lock().unwrap();
        let fields = seen.fields.entry(info.type_name.to_string()).or_default();
        if !fields.iter().any(|f| f == info.field_name) {
            fields.push(info.field_name.to_string());
        }
        None
    }
}

/// `vexfs_search_result` -> `VexfsSearchResult`: the Rust name of a header struct.
fn rust_name(c: &str) -> String {
    c.split('_')
        .map(|w| {
            let mut cs = w.chars();
            cs.next().map(|f| f.to_ascii_uppercase().to_string() + cs.as_str()).unwrap_or_default()
        })
        .collect()
}

/// The names of `#define NAME ...` lines whose NAME starts with `prefix`, in header order.
fn defines(header: &str, prefix: &str) -> Vec<String> {
    header
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("#define"))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|name| name.split('(').next().unwrap_or(name).to_string())
        .filter(|name| name.starts_with(prefix))
        .collect()
}

fn arch(triple: &str) -> &str {
    triple.split('-').next().unwrap_or(triple)
}

/// Compiles and runs a C program printing `NAME VALUE` for each ioctl number of the header.
fn ioctl_numbers_from_c(
    include: &Path,
    out: &Path,
    host: &str,
    names: &[String],
) -> Result<Vec<(String, u64)>, String> {
    let mut src = String::from("#include <stdio.h>\n#include \"vexfs.h\"\nint main(void)\n{\n");
    for n in names {
        writeln!(src, "\tprintf(\"%s %llu\\n\", \"{n}\", (unsigned long long)({n}));").unwrap();
    }
    src.push_str("\treturn 0;\n}\n");
    let c = out.join("vexfs_ioctl_numbers.c");
    let exe = out.join("vexfs_ioctl_numbers");
    fs::write(&c, src).map_err(|e| format!("writing {}: {e}", c.display()))?;
    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .cargo_warnings(false)
        .target(host)
        .host(host)
        .opt_level(0)
        .try_get_compiler()
        .map_err(|e| format!("no C compiler: {e}"))?;
    let status = compiler
        .to_command()
        .arg("-I")
        .arg(include)
        .arg(&c)
        .arg("-o")
        .arg(&exe)
        .status()
        .map_err(|e| format!("cannot run the C compiler {:?}: {e}", compiler.path()))?;
    if !status.success() {
        return Err(format!("compiling {} failed", c.display()));
    }
    let run = Command::new(&exe).output().map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    if !run.status.success() {
        return Err(format!("{} failed", exe.display()));
    }
    String::from_utf8_lossy(&run.stdout)
        .lines()
        .map(|l| {
            let (name, value) = l.split_once(' ').ok_or_else(|| format!("bad line {l:?}"))?;
            let value = value.parse().map_err(|_| format!("bad line {l:?}"))?;
            Ok((name.to_string(), value))
        })
        .collect()
}

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../core/src/abi.rs");
    let checks = match generate(&out) {
        Ok(checks) => checks,
        Err(why) => {
            println!("cargo:warning=the ABI test of vexctl will fail: {}", why.replace('\n', " "));
            fs::write(out.join("vexfs_bindgen.rs"), "").expect("writing vexfs_bindgen.rs");
            format!(
                "#[test]\nfn header_checks_generated() {{\n    let _ = same_field_type::<(), (), ()>;\n    \
                 panic!(\"{{}}\", \"{}\");\n}}\n",
                why.escape_default()
            )
        }
    };
    fs::write(out.join("abi_checks.rs"), checks).expect("writing abi_checks.rs");
}

/// Writes the bindgen output; returns the source of the checks.
fn generate(out: &Path) -> Result<String, String> {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let include = manifest.join("../include");
    let header_path = include.join("vexfs.h");
    let host = env::var("HOST").unwrap();
    let target = env::var("TARGET").unwrap();
    println!("cargo:rerun-if-changed={}", header_path.display());
    let header = fs::read_to_string(&header_path).map_err(|e| format!("cannot read {}: {e}", header_path.display()))?;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut builder = bindgen::Builder::default()
        .header(header_path.to_str().unwrap())
        .allowlist_type("vexfs_.*")
        .allowlist_var("VEXFS_.*")
        .layout_tests(false)
        .derive_debug(false)
        .derive_copy(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(Collect(Arc::clone(&seen))));
    // A musl (or other libc) target of the host's architecture: read the header as the host's C
    // compiler does, with its include paths (the kernel's asm/ headers are found there); the
    // layout is the same.
    if arch(&host) == arch(&target) {
        builder = builder.clang_arg(format!("--target={host}"));
    }
    let bindings = builder.generate().map_err(|e| {
        format!(
            "bindgen could not read {}: {e} (it needs libclang: Debian package libclang-dev)",
            header_path.display()
        )
    })?;
    bindings.write_to_file(out.join("vexfs_bindgen.rs")).map_err(|e| format!("writing the bindgen output: {e}"))?;
    let seen = seen.lock().unwrap();

    let ioctls = defines(&header, "VEXFS_IOC_");
    for name in defines(&header, "VEXFS_") {
        if !(seen.int_macros.contains(&name) || seen.str_macros.contains(&name) || ioctls.contains(&name)) {
            return Err(format!(
                "include/vexfs.h defines {name}, which vexctl/build.rs does not know how to check: \
                 teach it (and mirror the macro in core/src/abi.rs)"
            ));
        }
    }
    if seen.fields.is_empty() {
        return Err(format!("bindgen found no struct in {}", header_path.display()));
    }

    let mut t = String::from("// Generated by vexctl/build.rs from include/vexfs.h: do not edit.\n\n");
    t += "#[test]\nfn header_struct_layouts() {\n    use std::mem::{align_of, offset_of, size_of};\n";
    for (c, fields) in &seen.fields {
        let r = rust_name(c);
        writeln!(t, "    // struct {c}").unwrap();
        writeln!(t, "    assert_eq!(size_of::<{r}>(), size_of::<header::{c}>(), \"sizeof(struct {c})\");").unwrap();
        writeln!(t, "    assert_eq!(align_of::<{r}>(), align_of::<header::{c}>(), \"alignof(struct {c})\");").unwrap();
        for f in fields {
            writeln!(
                t,
                "    assert_eq!(offset_of!({r}, {f}), offset_of!(header::{c}, {f}), \"offsetof(struct {c}, {f})\");"
            )
            .unwrap();
            writeln!(t, "    same_field_type(|s: &{r}| &s.{f}, |s: &header::{c}| &s.{f});").unwrap();
        }
    }
    t += "}\n\n#[test]\nfn header_constants() {\n";
    for name in &seen.int_macros {
        writeln!(t, "    assert_eq!(i128::from({name}), i128::from(header::{name}), \"{name}\");").unwrap();
    }
    for name in &seen.str_macros {
        writeln!(t, "    assert_eq!(format!(\"{{}}\\0\", {name}).as_bytes(), &header::{name}[..], \"{name}\");")
            .unwrap();
    }
    // On glibc the request type is already u64.
    t += "}\n\n#[test]\n#[allow(clippy::unnecessary_cast)]\nfn header_ioctl_numbers() {\n";
    if arch(&host) == arch(&target) {
        let numbers = ioctl_numbers_from_c(&include, out, &host, &ioctls)?;
        if numbers.len() != ioctls.len() {
            return Err(format!("the C program printed {numbers:?}, expected {ioctls:?}"));
        }
        for (name, value) in numbers {
            writeln!(
                t,
                "    assert_eq!({name} as u64 & 0xffff_ffff, {value:#x}, \"{name}: the C compiler's value of the header's macro\");"
            )
            .unwrap();
        }
    } else {
        println!(
            "cargo:warning=cross build ({target} on {host}): the ioctl numbers are not compared \
             with the C compiler's"
        );
        for name in &ioctls {
            writeln!(t, "    let _ = {name};").unwrap();
        }
    }
    t += "}\n";
    Ok(t)
}
