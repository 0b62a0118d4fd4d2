#!/usr/bin/env bash
# Run the test suite (arguments go to pytest). The real-microphone tests need PulseAudio and
# PortAudio, the synthetic-corpus tests flite or espeak-ng, the web-page tests Chromium, the test
# of formats libsndfile cannot read (AAC) ffmpeg: as root (or with sudo) this installs Debian's
# packages for them when missing; otherwise those tests skip. With npm it installs the web
# page's onnxruntime-web when missing or out of date (`npm ci --prefix streaming/web`). The tests
# on real speech need ../shared/data beside the clone. The run ends with why tests were skipped
# (README.md, "Tests").
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(pulseaudio pulseaudio-utils libportaudio2 flite espeak-ng chromium chromium-driver
          ffmpeg)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  echo "installing ${missing[*]} for the microphone, corpus and web-page tests" >&2
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
      --no-install-recommends "${missing[@]}" >/dev/null; } \
    || echo "could not install ${missing[*]}: the microphone, corpus or web-page tests will" \
      "skip" >&2
fi
web=streaming/web
if [ "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ] \
    && command -v npm >/dev/null; then
  echo "installing onnxruntime-web in $web/node_modules for the web-page tests" >&2
  npm ci --prefix "$web" --ignore-scripts --no-audit --no-fund >/dev/null \
    || echo "npm ci --prefix $web failed: the web-page tests will skip" >&2
fi
exec python -m pytest -q -p no:cacheprovider "$@"
