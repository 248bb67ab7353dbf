//! Issue 11, item 12: `opsguard completions SHELL` and `opsguard man`
//! print what a packager installs, generated from the command line's own
//! grammar: every subcommand is in them.

use std::process::{Command, Output};

fn opsguard(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsguard"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OPSGUARD_") {
            cmd.env_remove(&key);
        }
    }
    cmd.args(args).output().unwrap()
}

const SUBCOMMANDS: &[&str] = &["watch", "explain", "replay", "postmortem", "approvals", "completions", "man"];

#[test]
fn completions_name_every_subcommand_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = opsguard(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell}: no {sub} in\n{script}");
        }
        // The approvals subcommands and their flags complete too.
        assert!(script.contains("approve") && script.contains("--token"), "{shell}");
    }
    let out = opsguard(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(1), "an unknown shell is a usage error");
}

#[test]
fn the_man_page_is_roff_naming_every_subcommand() {
    let out = opsguard(&["man"]);
    assert!(out.status.success(), "{out:?}");
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.starts_with(".ie") || page.contains(".TH opsguard"), "{page}");
    assert!(page.contains(".TH opsguard 1"), "{page}");
    assert!(page.contains(".SH NAME") && page.contains(".SH SYNOPSIS"), "{page}");
    for sub in SUBCOMMANDS {
        assert!(page.contains(&format!("opsguard\\-{sub}")) || page.contains(sub), "no {sub} in\n{page}");
    }
}

#[test]
fn man_out_dir_writes_a_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = opsguard(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    for page in ["opsguard.1", "opsguard-watch.1", "opsguard-approvals.1", "opsguard-approvals-approve.1"] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH opsguard"), "{page}: {text}");
    }
    let approve = std::fs::read_to_string(dir.path().join("opsguard-approvals-approve.1")).unwrap();
    assert!(approve.contains("digest"), "{approve}");
}

/// `lab` and `chaos` break things on purpose: they exist only with the
/// `lab` feature (on by default), so `cargo install --no-default-features`
/// ships an agent without them.
#[test]
fn lab_and_chaos_come_with_the_lab_feature_only() {
    let out = opsguard(&["--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8(out.stdout).unwrap();
    let listed = |name: &str| help.lines().any(|l| l.trim_start().starts_with(&format!("{name} ")));
    assert!(listed("watch") && listed("approvals"), "{help}");
    assert_eq!(listed("lab"), cfg!(feature = "lab"), "{help}");
    assert_eq!(listed("chaos"), cfg!(feature = "lab"), "{help}");
    let out = opsguard(&["chaos", "list"]);
    assert_eq!(out.status.success(), cfg!(feature = "lab"), "{out:?}");
}
