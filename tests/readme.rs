//! The README's "Try it" section is run as written (with its /tmp paths moved into a temporary
//! directory), so the walk-through a newcomer follows cannot drift from the program.

use std::process::Command;

#[test]
fn readme_try_it_runs_as_written() {
    let readme = include_str!("../README.md");
    let section = readme
        .split("## Try it")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a Try it section");
    let mut script = String::new();
    let mut in_block = false;
    for line in section.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            in_block = trimmed == "```sh";
            continue;
        }
        if in_block && !trimmed.starts_with("export PATH=") {
            script.push_str(trimmed);
            script.push('\n');
        }
    }
    assert!(
        script.contains("pointsledger verify"),
        "no commands found:\n{script}"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let script = script.replace("/tmp/", &format!("{}/", tmp.path().display()));
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_pointsledger"))
        .parent()
        .expect("bin dir");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("PATH", path)
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the README walk-through failed:\n{}\n--- stdout\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"valid\":true"), "{stdout}");
    assert!(stdout.contains("\"identical\":true"), "{stdout}");
    assert!(
        stdout.contains("\"available\":250"),
        "250 points earned:\n{stdout}"
    );
    assert!(
        stdout.contains("\"delta\":-200,"),
        "200 points redeemed:\n{stdout}"
    );
}
