#!/usr/bin/env bash
# Evaluates the flake with Nix 2.26 in a Debian trixie chroot (Debian bookworm's nix-bin 2.8 is
# too old for nixpkgs' lib). Prints the harness's report as JSON on stdout.
#
#   nix/eval/run.sh [report|tarballs|npm-deps] [REPO]
#
#   report    evaluate (default): outputs, drvPaths, the patched lockfile, module assertions
#   tarballs  also build four npm tarball derivations (npm pack; needs the npm registry)
#   npm-deps  build every tarball and importNpmLock's patched package.json/lockfile
#
# Needs, as root:
#   CHROOT (default /work/chroot-trixie): debootstrap --include=nix-bin,nodejs,npm,ca-certificates
#     trixie "$CHROOT" (then, in it, `apt-get install -f` if nix-bin was left unconfigured);
#   $CHROOT/eval-inputs: the upstream sources, not part of this repository:
#     nixpkgs.lib/  github.com/nix-community/nixpkgs.lib (whole tree)
#     blueprint/    github.com/numtide/blueprint (whole tree)
#     nixpkgs/pkgs/build-support/node/import-npm-lock/{default.nix,hooks/default.nix}
#                   from github.com/NixOS/nixpkgs (a version with packageSourceOverrides)
set -euo pipefail
mode="${1:-report}"
repo="$(cd "${2:-$(dirname "$0")/../..}" && pwd)"
chroot_dir="${CHROOT:-/work/chroot-trixie}"
inputs=/eval-inputs

die() { echo "nix/eval: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "needs root (chroot)"
[ -x "$chroot_dir/usr/bin/nix-instantiate" ] || die "no Nix in $chroot_dir (see the header of $0)"
for d in nixpkgs.lib/lib blueprint/lib nixpkgs/pkgs/build-support/node/import-npm-lock/hooks; do
  [ -d "$chroot_dir$inputs/$d" ] || die "missing $chroot_dir$inputs/$d (see the header of $0)"
done

# The checkout and the harness, read-only, at fixed places inside the chroot.
# Per run, so that runs side by side do not share mounts.
mnt="$chroot_dir/mnt/flt-$$"
harness="$chroot_dir/mnt/flt-eval-$$"
mkdir -p "$mnt" "$harness" "$chroot_dir/proc"
cleanup() {
  umount "$mnt" 2>/dev/null || true
  umount "$harness" 2>/dev/null || true
  rmdir "$mnt" "$harness" 2>/dev/null || true
}
trap cleanup EXIT
mountpoint -q "$chroot_dir/proc" || mount -t proc proc "$chroot_dir/proc"
mount --bind -o ro "$repo" "$mnt"
mount --bind -o ro "$(cd "$(dirname "$0")" && pwd)" "$harness"

# The tarball builds trust what this host trusts (a TLS-inspecting proxy's CA included).
cp /etc/ssl/certs/ca-certificates.crt "$chroot_dir$inputs/ca-bundle.crt"

nix_config=$'sandbox = false\nbuild-users-group =\nsubstituters =\nexperimental-features = nix-command\n'
in_chroot() { chroot "$chroot_dir" env -i PATH=/usr/bin:/bin HOME=/root NIX_CONFIG="$nix_config" "$@"; }
args=(--arg inputsDir "$inputs" --arg repo "/mnt/flt-$$")
entry="/mnt/flt-eval-$$/default.nix"

case "$mode" in
  report)
    in_chroot nix-instantiate --read-write-mode --eval --strict --json "$entry" "${args[@]}" -A report
    ;;
  tarballs)
    in_chroot nix-build --no-out-link "$entry" "${args[@]}" -A tarballs >&2
    in_chroot nix-instantiate --read-write-mode --eval --strict --json "$entry" "${args[@]}" -A report
    ;;
  npm-deps)
    in_chroot nix-build --no-out-link --max-jobs 2 "$entry" "${args[@]}" -A npmDeps
    ;;
  *) die "unknown mode $mode" ;;
esac
