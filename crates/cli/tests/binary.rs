//! The `agentsafe` binary of this package starts, names itself and refuses an unknown
//! executor with a hint; the workspace's end-to-end tests (`tests/`) drive the rest.

use std::process::Command;

fn agentsafe(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_agentsafe"))
        .args(args)
        .output()
        .unwrap_or_else(|e| unreachable!("the binary cargo built does not start: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_binary_names_itself_and_refuses_unknown_executors() {
    let (code, stdout, _) = agentsafe(&["--version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("agentsafe "), "{stdout}");
    let (code, _, stderr) = agentsafe(&["run", "x.y.z", "--executor", "nope"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("unknown executor `nope`"), "{stderr}");
    assert!(stderr.contains("main_with"), "{stderr}");
}
