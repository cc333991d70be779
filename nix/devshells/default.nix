# `nix develop`: what `npm ci`, `npm test` and `npm run bench` need. The tests also call
# ssh-keygen (OpenSSH key fixtures), uname, ip (network namespaces) and the Nix CLI.
{ pkgs, ... }:
pkgs.mkShell {
  packages = [
    pkgs.nodejs_22 # npm comes with it
    pkgs.openssh
    pkgs.git
    pkgs.nix
  ]
  ++ pkgs.lib.optionals pkgs.stdenv.hostPlatform.isLinux [ pkgs.iproute2 ];
  shellHook = ''
    echo "flt dev shell: node $(node --version); npm ci && npm test"
  '';
}
