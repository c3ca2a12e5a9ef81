#!/usr/bin/env bash
# Install ngspice with the KLU sparse solver on Debian bookworm.
#
# ngspice 39 in bookworm proper has no KLU (a 128x128 .op takes ~70 s); the bookworm-backports
# suite carries ngspice 46 with KLU (~0.6 s). The backports entry is derived from the Debian
# source entry this machine already uses, so no mirror is hard-coded here.
# Idempotent: does nothing when an ngspice shared library that reports KLU is already installed.
# Falls back to the distribution's ngspice, with a warning, when backports are unavailable.
set -euo pipefail

log() { echo "[install_ngspice] $*" >&2; }

have_klu() {
    # The shared library is what PySpice loads; its version banner says "Compiled with KLU".
    local lib
    lib=$(ldconfig -p 2>/dev/null | awk '/libngspice\.so\.0 /{print $NF; exit}')
    [ -n "$lib" ] && grep -qa "KLU" "$lib"
}

if have_klu && command -v ngspice >/dev/null; then
    log "ngspice with KLU already installed: $(ngspice -v 2>/dev/null | grep -m1 -o 'ngspice-[0-9.]*' || true)"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi

# --- derive a bookworm-backports entry from the existing Debian source ----------------------
backports_file=/etc/apt/sources.list.d/xbarchar-bookworm-backports.sources
derive_backports() {
    local src uri keyring
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        src=/etc/apt/sources.list.d/debian.sources
        # First deb822 stanza whose suites include plain "bookworm".
        uri=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm([ \n]|$)/ && !/security/ {
                    match($0, /URIs:[ ]*[^ \n]+/); print substr($0, RSTART+6, RLENGTH-6); exit }' "$src" | tr -d ' ')
        keyring=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm([ \n]|$)/ && !/security/ {
                    if (match($0, /Signed-By:[ ]*[^ \n]+/)) print substr($0, RSTART+11, RLENGTH-11); exit }' "$src" | tr -d ' ')
    elif [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1=="deb" && $0 ~ / bookworm / {for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
        keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    fi
    if [ -z "${uri:-}" ]; then
        return 1
    fi
    log "deriving bookworm-backports from the existing Debian source entry"
    {
        echo "Types: deb"
        echo "URIs: ${uri}"
        echo "Suites: bookworm-backports"
        echo "Components: main"
        [ -n "${keyring:-}" ] && echo "Signed-By: ${keyring}"
    } | $SUDO tee "$backports_file" >/dev/null
}

if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    derive_backports || log "WARNING: no Debian bookworm source entry found to derive backports from"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || log "WARNING: apt-get update reported errors"
if $SUDO apt-get install -y -qq -t bookworm-backports ngspice libngspice0 >/dev/null; then
    log "installed ngspice from bookworm-backports"
else
    log "WARNING: bookworm-backports ngspice unavailable; installing the distribution ngspice."
    log "WARNING: it has no KLU solver: large arrays (128x128) simulate ~300x slower."
    $SUDO apt-get install -y -qq ngspice libngspice0 >/dev/null
fi
$SUDO ldconfig
if have_klu; then
    log "ngspice reports KLU: $(ngspice -v 2>/dev/null | grep -m1 -o 'ngspice-[0-9.]*' || true)"
else
    log "WARNING: installed ngspice has no KLU; xbarchar will fall back to the default sparse solver"
fi
