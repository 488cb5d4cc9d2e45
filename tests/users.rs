//! Running test programs as another user, for the tests about what root does with files and
//! sockets that another local user could reach. They need root, `setpriv` and `unshare`
//! (util-linux); without them they say so and pass.

use std::process::Command;

/// A uid that no account uses: "another local user".
pub(crate) const OTHER_UID: u32 = 54321;

/// Whether the test can play another user; if not, say why the test is skipped.
pub(crate) fn can_switch_users(test: &str) -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped {test}: needs root, to act as another local user");
        return false;
    }
    for tool in ["setpriv", "unshare"] {
        if Command::new(tool).arg("--version").output().is_err() {
            eprintln!("skipped {test}: needs {tool} (util-linux)");
            return false;
        }
    }
    true
}

/// `program` run as `uid`:`gid` without supplementary groups. PATH is the system's, since
/// root's may lead through folders the other user cannot enter.
pub(crate) fn as_user(uid: u32, gid: u32, program: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .arg("--")
        .arg(program)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin");
    cmd
}
