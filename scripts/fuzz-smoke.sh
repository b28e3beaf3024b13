#!/usr/bin/env bash
# fuzz-smoke.sh: run every fuzz target of the parsers that face the network
# or the disk for a short while each (FUZZTIME, default 10s), so CI catches a
# crash the seed corpus does not. A failing input is written under the
# package's testdata/fuzz/<Target>/ by `go test`; commit it as a regression.
#
#   scripts/fuzz-smoke.sh              # every target, 10s each
#   FUZZTIME=1m scripts/fuzz-smoke.sh  # longer
#   scripts/fuzz-smoke.sh ./paxos      # only the targets of these packages
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME="${FUZZTIME:-10s}"
GO="${GO:-go}"

# package target: the peer wire codec, the state machine's command decoding,
# node paths and sequencers, the API's request decoding, the storage codec.
TARGETS=(
	"./paxos FuzzDecodeMessage"
	"./paxos/pebblestore FuzzDecodeEntry"
	"./lockservice FuzzDecodeCommand"
	"./lockservice FuzzValidatePath"
	"./lockservice FuzzParseSequencer"
	"./api FuzzDecodeRequests"
)

# count prints how many files a corpus directory holds (0 if none).
count() {
	if [[ -d "$1" ]]; then find "$1" -type f | wc -l; else echo 0; fi
}

want=("$@")
failed=()
for t in "${TARGETS[@]}"; do
	read -r pkg fn <<<"$t"
	if ((${#want[@]})); then
		match=0
		for w in "${want[@]}"; do [[ "$w" == "$pkg" ]] && match=1; done
		((match)) || continue
	fi
	listed="$("$GO" test -list "^${fn}\$" "$pkg")" || listed=""
	if ! grep -qx "$fn" <<<"$listed"; then
		echo "fuzz-smoke: $pkg has no $fn" >&2
		failed+=("$pkg $fn (missing)")
		continue
	fi
	corpus="$pkg/testdata/fuzz/$fn"
	for attempt in 1 2; do
		before="$(count "$corpus")"
		echo "fuzz-smoke: $pkg $fn for $FUZZTIME"
		if "$GO" test -run '^$' -fuzz "^${fn}\$" -fuzztime "$FUZZTIME" "$pkg"; then
			break
		fi
		after="$(count "$corpus")"
		if ((after > before)); then
			failed+=("$pkg $fn (failing input in $corpus)")
			break
		fi
		# No failing input written: Go's fuzz coordinator can report its own
		# -fuzztime deadline as "context deadline exceeded" (go.dev/issue/75804,
		# fixed in Go 1.27). Try once more; twice is a real failure.
		if ((attempt == 2)); then
			failed+=("$pkg $fn")
		else
			echo "fuzz-smoke: $pkg $fn failed without a failing input; retrying once" >&2
		fi
	done
done
if ((${#failed[@]})); then
	printf 'fuzz-smoke: FAILED: %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "fuzz-smoke: all targets passed"
