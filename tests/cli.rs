//! The command line itself: `-c` where it means something, `--version`, and the completions
//! and man page generated from the same definition.

use crate::util::*;

#[test]
fn config_is_refused_by_the_commands_that_read_none() {
    for args in [
        &["send", "-c", "/nonexistent.toml", "127.0.0.1:9", "hi"][..],
        &["chat", "-c", "/nonexistent.toml", "127.0.0.1:9"],
        &["port", "-c", "/nonexistent.toml", "9"],
        &["bench", "-c", "/nonexistent.toml", "127.0.0.1:9"],
        &["-c", "/nonexistent.toml", "send", "127.0.0.1:9", "hi"],
        &["-c", "/nonexistent.toml", "port", "9"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("-c"), "{args:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), "", "{args:?}");
    }
}

#[test]
fn config_goes_before_or_after_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.toml");
    std::fs::write(&path, tcp_listener("one", "[\"echo\"]", "")).unwrap();
    let file = path.to_str().unwrap();
    for args in [&["check", "-c", file][..], &["-c", file, "check"]] {
        let o = run(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).starts_with(&format!("{file}: ok, 1 listener(s)")));
    }
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let o = run(&["--version"]);
    assert!(o.status.success());
    let version = stdout(&o);
    let expected = format!("switchboard {}", env!("CARGO_PKG_VERSION"));
    // From a git checkout the commit follows; from a tarball, the bare version.
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        Some(commit) => assert_eq!(version, format!("{expected} (commit {commit})\n")),
        None => assert_eq!(version, format!("{expected}\n")),
    }
}

#[test]
fn completions_and_man_pages_come_from_the_cli_definition() {
    let o = run(&["generate", "completions", "bash"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bash = stdout(&o);
    assert!(bash.contains("complete -F _switchboard"), "{bash}");
    for command in ["send", "chat", "check", "attach", "port", "bench"] {
        assert!(bash.contains(command), "{command} missing");
    }
    let o = run(&["generate", "completions", "zsh"]);
    assert!(stdout(&o).starts_with("#compdef switchboard"));
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["generate", "man", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = std::fs::read_to_string(dir.path().join("switchboard.1")).unwrap();
    assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{page}");
    assert!(page.contains("switchboard\\-check(1)"), "{page}");
    assert!(dir.path().join("switchboard-check.1").exists());
    // The generator is for packagers: hidden from the help.
    assert!(!stdout(&run(&["--help"])).contains("generate"));
}
