package bundle_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/examnode/examnode/bundle"
)

// benchSize is the content size of the benchmark bundles.
const benchSize = 64 << 20

// benchInput is 64 MiB of content: "media" is random bytes (attachments
// such as scans, audio or video do not compress), "logs" is JSON result
// logs (compress well).
func benchInput(b *testing.B, kind string) bundle.Input {
	b.Helper()
	in := bundle.Input{Execution: "e1", Created: created}
	switch kind {
	case "media":
		data := make([]byte, benchSize)
		if _, err := io.ReadFull(rand.Reader, data); err != nil {
			b.Fatal(err)
		}
		in.Files = []bundle.File{{Path: "attachments/recording.webm", Data: data}}
	case "logs":
		const per = 64 << 10
		for i := 0; i < benchSize/per; i++ {
			var buf bytes.Buffer
			for seq := 0; buf.Len() < per; seq++ {
				fmt.Fprintf(&buf, `{"execution":"e1","seq":%d,"at":"2026-06-01T08:%02d:%02d.%06dZ","event":"response","data":{"item":"item-%d","value":"choice_%d","duration_ms":%d}}`+"\n",
					i*1000+seq, seq%60, i%60, seq*7919%1000000, seq%40, seq%4, seq*37%90000)
			}
			in.Files = append(in.Files, bundle.File{Path: fmt.Sprintf("result-logs/e1.%08d.json", i), Data: buf.Bytes()[:per]})
		}
	}
	return in
}

// cpuRate reports MB of content per CPU second used (user+system, every
// thread), which other load on the machine does not skew the way it skews
// wall-clock MB/s.
func cpuRate(b *testing.B, start time.Duration, bytesPerOp int64) {
	if used := cpuTime() - start; used > 0 {
		b.ReportMetric(float64(bytesPerOp)*float64(b.N)/1e6/used.Seconds(), "MB/cpu-s")
	}
}

// BenchmarkBuild measures bundle creation (hashing, manifest, signature,
// tar.gz) in MB/s of content. With BUNDLE_BENCH_OUT set, it writes the
// archive there, for timing `sha256sum` on the same file.
func BenchmarkBuild(b *testing.B) {
	key := newKey(b)
	for _, kind := range []string{"media", "logs"} {
		b.Run(kind, func(b *testing.B) {
			in := benchInput(b, kind)
			var buf bytes.Buffer
			b.SetBytes(benchSize)
			b.ResetTimer()
			cpu := cpuTime()
			for b.Loop() {
				buf.Reset()
				if _, err := bundle.Build(&buf, in, key); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			cpuRate(b, cpu, benchSize)
			b.ReportMetric(float64(buf.Len())/(1<<20), "archive-MiB")
			if p := os.Getenv("BUNDLE_BENCH_OUT"); p != "" {
				if err := os.WriteFile(p+"."+kind+".tar.gz", buf.Bytes(), 0o644); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerify measures offline verification of an archive (gzip, tar,
// manifest, signature, every file's SHA-256, canonical form) in MB/s of
// content, streaming (VerifyArchive) as `bundle verify` of a lone archive
// and the archive node's check do.
func BenchmarkVerify(b *testing.B) {
	key := newKey(b)
	for _, kind := range []string{"media", "logs"} {
		b.Run(kind, func(b *testing.B) {
			var buf bytes.Buffer
			if _, err := bundle.Build(&buf, benchInput(b, kind), key); err != nil {
				b.Fatal(err)
			}
			data := buf.Bytes()
			b.SetBytes(benchSize)
			b.ResetTimer()
			cpu := cpuTime()
			for b.Loop() {
				if _, err := bundle.VerifyArchive(bytes.NewReader(data)); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			cpuRate(b, cpu, benchSize)
		})
	}
}

// BenchmarkSeal measures sealing an archive with age to two recipients
// and unsealing it, in MB/s of archive.
func BenchmarkSeal(b *testing.B) {
	data := make([]byte, benchSize)
	if _, err := io.ReadFull(rand.Reader, data); err != nil {
		b.Fatal(err)
	}
	key, other := newKey(b), newKey(b)
	recips := []string{peerID(b, key), peerID(b, other)}
	var sealed bytes.Buffer
	b.Run("seal", func(b *testing.B) {
		b.SetBytes(benchSize)
		cpu := cpuTime()
		for b.Loop() {
			sealed.Reset()
			if err := bundle.Seal(&sealed, data, recips); err != nil {
				b.Fatal(err)
			}
		}
		cpuRate(b, cpu, benchSize)
	})
	b.Run("unseal", func(b *testing.B) {
		b.SetBytes(benchSize)
		cpu := cpuTime()
		for b.Loop() {
			if _, err := bundle.Unseal(sealed.Bytes(), key); err != nil {
				b.Fatal(err)
			}
		}
		cpuRate(b, cpu, benchSize)
	})
}
