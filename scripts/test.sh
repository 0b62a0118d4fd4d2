#!/usr/bin/env bash
# Run the test suite. The real-microphone tests need PulseAudio and PortAudio, the corpus tests
# flite and espeak-ng: as root (or with sudo) this installs Debian's packages for them when
# missing; otherwise those tests skip.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(pulseaudio pulseaudio-utils libportaudio2 flite espeak-ng)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  echo "installing ${missing[*]} for the microphone tests" >&2
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
      --no-install-recommends "${missing[@]}" >/dev/null; } \
    || echo "could not install ${missing[*]}: the microphone tests will be skipped" >&2
fi
exec python -m pytest -q -p no:cacheprovider "$@"
