//! Tests of `scripts/package-lambda`, the release packaging the broker-lambda Terraform module downloads: the real script on the real `bootstrap`, the zip read back with python3's zipfile, and the module's own checksum line (taken from its main.tf) run with sh.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

const BOOTSTRAP: &str = env!("CARGO_BIN_EXE_bootstrap");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Lambda architecture of this host, which the debug `bootstrap` was built for (CI: x86_64).
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86_64",
        "aarch64" => "arm64",
        other => panic!("no Lambda architecture runs {other} binaries"),
    }
}

/// The Lambda architecture this host's binaries are not for.
fn other_arch() -> &'static str {
    if host_arch() == "x86_64" {
        "arm64"
    } else {
        "x86_64"
    }
}

fn asset(arch: &str) -> String {
    format!("tokenmint-lambda-{arch}.zip")
}

fn package(binary: &Path, arch: &str, out: &Path) -> Output {
    Command::new(repo_root().join("scripts/package-lambda"))
        .arg("--binary")
        .arg(binary)
        .args(["--arch", arch, "--out"])
        .arg(out)
        .output()
        .expect("run scripts/package-lambda")
}

fn package_ok(binary: &Path, arch: &str, out: &Path) {
    let o = package(binary, arch, out);
    assert!(
        o.status.success(),
        "package-lambda --arch {arch} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The zip's entries as python3's zipfile reads them (name, Unix mode, origin system, date);
/// when there is exactly one, its bytes (CRC-checked by zipfile) are written to `extract_to`.
fn zip_entries(zip: &Path, extract_to: &Path) -> Vec<Value> {
    const READER: &str = r#"
import json, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    infos = z.infolist()
    if len(infos) == 1:
        with open(sys.argv[2], "wb") as f:
            f.write(z.read(infos[0]))
    print(json.dumps([
        {"name": i.filename, "mode": i.external_attr >> 16, "system": i.create_system,
         "date_time": list(i.date_time)}
        for i in infos
    ]))
"#;
    let o = Command::new("python3")
        .args(["-c", READER])
        .arg(zip)
        .arg(extract_to)
        .output()
        .expect("run python3");
    assert!(
        o.status.success(),
        "python3 zipfile could not read {}: {}",
        zip.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&o.stdout).unwrap()
}

/// The line of broker-lambda's `release_artifact` provisioner that checks the zip against
/// checksums.txt, exactly as written in main.tf, so this test follows the module.
fn module_check_line() -> String {
    let main_tf =
        std::fs::read_to_string(repo_root().join("deploy/terraform/modules/broker-lambda/main.tf"))
            .unwrap();
    let lines: Vec<&str> = main_tf
        .lines()
        .map(str::trim)
        .filter(|l| l.contains("checksums.txt") && l.contains("sha256sum -c"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one checksum line in broker-lambda's main.tf, found {lines:?}"
    );
    let line = lines[0];
    assert!(
        line.contains("$ASSET"),
        "the check must name the asset: {line}"
    );
    // A heredoc keeps backslashes; only ${…} and %{…} are Terraform's (and $${ / %%{ escape them).
    assert!(
        !line.replace("$${", "").replace("%%{", "").contains("${")
            && !line.replace("%%{", "").contains("%{"),
        "the check line interpolates a Terraform value this test cannot supply: {line}"
    );
    line.replace("$${", "${").replace("%%{", "%{")
}

/// Runs the module's check line as the provisioner does (`/bin/sh -c`, `set -eu`, in the
/// download directory, ASSET set).
fn module_check(dir: &Path, arch: &str) -> Output {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("set -eu\n{}", module_check_line()))
        .current_dir(dir)
        .env("ASSET", asset(arch))
        .output()
        .expect("run /bin/sh")
}

/// A 64-bit little-endian ELF header for `arch` (e_type ET_DYN), followed by `tail`: enough for
/// the script's checks, which read the header and the glibc version names, not the code.
fn fake_elf(dir: &Path, arch: &str, tail: &[u8]) -> PathBuf {
    let machine: u16 = if arch == "x86_64" { 0x3e } else { 0xb7 };
    let mut bytes = vec![0u8; 64];
    bytes[..4].copy_from_slice(b"\x7fELF");
    bytes[4] = 2; // ELFCLASS64
    bytes[5] = 1; // ELFDATA2LSB
    bytes[6] = 1; // EV_CURRENT
    bytes[16..18].copy_from_slice(&3u16.to_le_bytes());
    bytes[18..20].copy_from_slice(&machine.to_le_bytes());
    bytes.extend_from_slice(tail);
    let path = dir.join(format!("fake-{arch}-{}", tail.len()));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn the_zip_holds_only_bootstrap_mode_0755_and_passes_the_modules_check() {
    let arch = host_arch();
    let out = tempfile::tempdir().unwrap();
    package_ok(Path::new(BOOTSTRAP), arch, out.path());

    let mut names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["checksums.txt".to_string(), asset(arch)]);

    // 1. Exactly one entry, `bootstrap`, a regular file rwxr-xr-x from a Unix system, dated
    //    1980-01-01, holding the binary's bytes.
    let zip = out.path().join(asset(arch));
    let extracted = tempfile::tempdir().unwrap();
    let entries = zip_entries(&zip, &extracted.path().join("bootstrap"));
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!(e["name"], "bootstrap");
    assert_eq!(
        e["mode"],
        0o100_755,
        "mode {:o}",
        e["mode"].as_u64().unwrap()
    );
    assert_eq!(
        e["system"], 3,
        "made on Unix, so the mode is read from external_attr"
    );
    assert_eq!(e["date_time"], serde_json::json!([1980, 1, 1, 0, 0, 0]));
    assert!(
        std::fs::read(extracted.path().join("bootstrap")).unwrap()
            == std::fs::read(BOOTSTRAP).unwrap(),
        "the zip's bootstrap differs from the binary"
    );

    // 2. checksums.txt is sha256sum's format, and the module's own check accepts the zip.
    let sums = std::fs::read_to_string(out.path().join("checksums.txt")).unwrap();
    let (hash, name) = sums.trim_end().split_once("  ").unwrap();
    assert_eq!(sums.lines().count(), 1, "{sums}");
    assert!(
        hash.len() == 64
            && hash
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{sums}"
    );
    assert_eq!(name, asset(arch));
    let ok = module_check(out.path(), arch);
    assert!(
        ok.status.success(),
        "the module's check refused a fresh package: {}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );

    // 3. One flipped byte in the zip, and the module's check fails the apply.
    let mut bytes = std::fs::read(&zip).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&zip, &bytes).unwrap();
    let bad = module_check(out.path(), arch);
    assert!(
        !bad.status.success(),
        "the module's check accepted a zip with a flipped byte"
    );
    assert!(
        String::from_utf8_lossy(&bad.stdout).contains("FAILED"),
        "sha256sum should report the mismatch: {}{}",
        String::from_utf8_lossy(&bad.stdout),
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn the_same_binary_gives_the_same_zip_bytes() {
    let arch = host_arch();
    let first = tempfile::tempdir().unwrap();
    package_ok(Path::new(BOOTSTRAP), arch, first.path());

    // The same bytes under another name and modification time, packaged into another directory.
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = copy_dir.path().join("renamed-bootstrap");
    std::fs::copy(BOOTSTRAP, &copy).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&copy)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000))
        .unwrap();
    let second = tempfile::tempdir().unwrap();
    package_ok(&copy, arch, second.path());

    for file in [asset(arch), "checksums.txt".to_string()] {
        assert!(
            std::fs::read(first.path().join(&file)).unwrap()
                == std::fs::read(second.path().join(&file)).unwrap(),
            "{file} differs between two packagings of the same binary"
        );
    }
}

#[test]
fn checksums_list_every_asset_in_the_directory_sorted() {
    let bins = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    // x86_64 first, so the file's order is the script's sorting, not the order of packaging.
    package_ok(
        &fake_elf(bins.path(), "x86_64", b"x86"),
        "x86_64",
        out.path(),
    );
    package_ok(&fake_elf(bins.path(), "arm64", b"arm"), "arm64", out.path());

    let sums = std::fs::read_to_string(out.path().join("checksums.txt")).unwrap();
    let names: Vec<&str> = sums
        .lines()
        .map(|l| l.split_once("  ").unwrap().1)
        .collect();
    assert_eq!(names, [asset("arm64"), asset("x86_64")], "{sums}");
    for arch in ["arm64", "x86_64"] {
        let o = module_check(out.path(), arch);
        assert!(
            o.status.success(),
            "the module's check refused {}: {}{}",
            asset(arch),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn a_binary_lambda_cannot_run_is_refused_and_nothing_is_written() {
    let out = tempfile::tempdir().unwrap();
    let bins = tempfile::tempdir().unwrap();
    let (host_machine, other_machine) = if host_arch() == "x86_64" {
        ("x86_64 (e_machine 0x003e)", "aarch64 (e_machine 0x00b7)")
    } else {
        ("aarch64 (e_machine 0x00b7)", "x86_64 (e_machine 0x003e)")
    };
    let not_elf = bins.path().join("not-an-elf");
    std::fs::write(&not_elf, "#!/bin/sh\necho bootstrap\n").unwrap();
    let new_glibc = fake_elf(bins.path(), host_arch(), b"\0GLIBC_2.17\0GLIBC_2.38\0");

    let cases: [(&Path, &str, Vec<String>); 3] = [
        (
            Path::new(BOOTSTRAP),
            other_arch(),
            vec![
                format!("it is an ELF for {host_machine}"),
                format!("--arch {} needs {other_machine}", other_arch()),
            ],
        ),
        (&not_elf, host_arch(), vec!["not an ELF file".to_string()]),
        (
            &new_glibc,
            host_arch(),
            vec![
                "needs glibc 2.38".to_string(),
                "provided.al2023".to_string(),
                "2.34".to_string(),
            ],
        ),
    ];
    for (binary, arch, wants) in cases {
        let o = package(binary, arch, out.path());
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success(),
            "{} --arch {arch} was packaged",
            binary.display()
        );
        for want in wants {
            assert!(stderr.contains(&want), "stderr lacks {want:?}: {stderr}");
        }
    }
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "a refused binary left files behind"
    );
}
