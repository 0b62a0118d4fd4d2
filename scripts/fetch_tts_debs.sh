#!/usr/bin/env bash
# Download the Debian packages of every synthesiser scripts/make_corpus.py uses (flite,
# festival with its voices and lexicons, espeak-ng, MBROLA en1, RHVoice English, SVOX Pico)
# plus the shared libraries they need, for a machine without apt (the GPU machine).
#
#   scripts/fetch_tts_debs.sh DIR          # here, where apt works
#   # carry DIR to the other machine, then there:
#   for d in DIR/*.deb; do dpkg -x "$d" "$PWD/tts"; done      # never into /
#   # (no dpkg there: mkdir -p tts; for d in DIR/*.deb; do ar p "$d" data.tar.xz | tar xJ -C tts; done)
#   python scripts/make_corpus.py --tts-root "$PWD/tts" ...
# RHVoice, Pico and MBROLA come from Debian's contrib and non-free components: enable them in
# the apt sources here first (Components: main contrib non-free; apt-get update). Piper is a
# Python package, not a .deb (see --list-voices).
#
# Needs the engines installed here (the libraries are found with ldd). Packages come from this
# machine's apt sources (Debian 12 here), so the other machine needs a glibc at least as new
# as this one's (`ldd --version`). Libraries every Debian/Ubuntu base image holds
# (libc6, libstdc++6, libgcc-s1, Priority: required) are left out.
set -euo pipefail

if [[ $# -ne 1 || $1 == -h || $1 == --help ]]; then
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
dir=$1
mkdir -p "$dir"

binaries=(/usr/bin/flite /usr/bin/espeak-ng /usr/bin/festival /usr/bin/RHVoice-test
          /usr/bin/pico2wave /usr/bin/mbrola)
for binary in "${binaries[@]}"; do
    if [[ ! -x $binary ]]; then
        echo "$binary is missing; first: apt-get install -y --no-install-recommends" \
            "flite espeak-ng festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts" \
            "rhvoice rhvoice-english libttspico-utils mbrola mbrola-en1" >&2
        exit 1
    fi
done

# Programs and data, then the packages owning every shared library the programs load.
wanted=(flite libflite1 espeak-ng espeak-ng-data libespeak-ng1 libasound2-data
        festival festlex-cmu festlex-poslex festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
        rhvoice rhvoice-english librhvoice-core7 libttspico-utils libttspico0 libttspico-data
        mbrola mbrola-en1)
mapfile -t libraries < <(ldd "${binaries[@]}" | sed -n 's/.* => \(\/[^ ]*\) .*/\1/p' | sort -u)
mapfile -t owners < <(for lib in "${libraries[@]}"; do
        dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib"
    done | cut -d: -f1 | sort -u)
# Leave out what every Debian/Ubuntu base image holds: the C/C++ runtime (a foreign libc on
# LD_LIBRARY_PATH would break every program) and packages of Priority: required.
base='^(libc6|libgcc-s1|libstdc\+\+6)$'
for pkg in "${owners[@]}"; do
    priority=$(dpkg-query -W -f='${Priority}' "$pkg")
    [[ $pkg =~ $base || $priority == required ]] || wanted+=("$pkg")
done
mapfile -t wanted < <(printf '%s\n' "${wanted[@]}" | sort -u)

echo "downloading ${#wanted[@]} packages into $dir:"
printf '  %s\n' "${wanted[@]}"
(cd "$dir" && apt-get download "${wanted[@]}")
echo "total: $(du -ch "$dir"/*.deb | tail -1 | cut -f1) in $(ls "$dir"/*.deb | wc -l) .deb files"
