//! Build script: puts the git commit into `switchboard --version`.
//!
//! From a git checkout the version reads `0.1.0 (commit 1a2b3c4d5e6f)`. Where there is no git
//! (a source tarball, a vendored crate) or git fails, it is the bare version; a packager can
//! set `SWITCHBOARD_COMMIT` to name the commit instead.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=SWITCHBOARD_COMMIT");
    let commit = std::env::var("SWITCHBOARD_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| {
            // Rebuild when HEAD moves: HEAD itself, the branch it points to, packed refs.
            for path in ["HEAD", "packed-refs"] {
                if let Some(p) = git(&["rev-parse", "--git-path", path]) {
                    println!("cargo:rerun-if-changed={p}");
                }
            }
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
                && let Some(p) = git(&["rev-parse", "--git-path", &branch])
            {
                println!("cargo:rerun-if-changed={p}");
            }
            git(&["rev-parse", "--short=12", "HEAD"])
        });
    let suffix = commit.map_or(String::new(), |c| format!(" (commit {})", c.trim()));
    println!("cargo:rustc-env=SWITCHBOARD_COMMIT_SUFFIX={suffix}");
}
