#!/usr/bin/env bash
# Build the Debian package: target/debian/switchboard_VERSION-1_ARCH.deb.
#
#   bash config/debian/build.sh
#
# The release binary first; then, generated from it, the man pages and the shell completions
# and the service unit with the package's paths and user; then `cargo deb` packs them as the
# [package.metadata.deb] section of Cargo.toml lists. Needs cargo-deb
# (`cargo install cargo-deb --locked`) and dpkg-dev (for the library dependencies).
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build --release --locked
bin=target/release/switchboard
out=target/deb-assets
rm -rf "$out"
mkdir -p "$out/man" "$out/completions"

"$bin" generate man "$out/man"
gzip -9n "$out"/man/*.1
"$bin" generate completions bash >"$out/completions/switchboard"
"$bin" generate completions zsh >"$out/completions/_switchboard"
"$bin" generate completions fish >"$out/completions/switchboard.fish"

# The unit of config/systemd/ runs /usr/local/bin/switchboard as a user made up for each run;
# the package's runs /usr/bin/switchboard as the switchboard user its postinst makes.
sed -e 's|/usr/local/bin/switchboard|/usr/bin/switchboard|g' \
    -e 's|^DynamicUser=yes$|User=switchboard\nGroup=switchboard|' \
    -e 's|^# An unprivileged user made up for each run; no capabilities at all\.|# The unprivileged switchboard user, made when the package is installed; no capabilities.|' \
    config/systemd/switchboard.service >"$out/switchboard.service"
grep -q '^User=switchboard$' "$out/switchboard.service"

cargo deb --no-build
