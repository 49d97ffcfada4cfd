package main

import (
	"bytes"
	"os"
)

// keepMarker starts the hand-measured sections at the end of BENCHMARKS.md
// (bundles, measured with Go benchmarks and the real sha256sum) that
// `examnode bench` does not produce: it carries them over when it rewrites
// the file.
const keepMarker = "<!-- examnode bench keeps everything below this line -->"

// keptSections returns the part of the file at path from keepMarker on,
// with a blank line before it, or nil.
func keptSections(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	i := bytes.Index(b, []byte(keepMarker))
	if i < 0 {
		return nil
	}
	return append([]byte("\n"), b[i:]...)
}
