package schema_test

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/examnode/examnode/schema"
)

func FuzzDecode(f *testing.F) {
	for _, k := range schema.Kinds() {
		enc, err := schema.Encode(valid(f, k))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `{"schema":1}`, `{"schema":3,"kind":"x"}`, `{"schema":1.0}`,
		`{"schema":1,"kind":"test-takers","id":"a","org":"o","body":{"login":"x"}} {}`,
		`{"schema":1,"kind":"test-takers","id":"a","org":"o","body":{"login":"x","password":"p"}}`,
		`{"schema":1,"kind":"test-takers","id":"a","org":"o","body":{"login":"x","login":"y"}}`,
		`{"schema":1,"kind":"test-takers","id":"a","org":"o","body":{"login":"\u2028<&>","name":"\ud800"}}`,
		`{"schema":1,"kind":"executions","id":"e1.v2","org":"o","body":{"delivery":"d","test_taker":"t","state":"finished","started":"2026-01-01T00:00:00+14:00","finished":"2026-01-01T00:00:00.5-12:00","vm":"p","version":2,"previous":"e1"}}`,
		`{"schema":1,"kind":"result-logs","id":"e.1","org":"o","body":{"execution":"e","seq":1,"at":"2026-01-01T00:00:00Z","event":"x","data":{ "a" : [ 1e5 , -0, "\u0041" ] }}}`,
		`{"schema":1,"kind":"results","id":"e","org":"o","body":{"execution":"e","finished":"2026-01-01T00:00:00Z","variables":null}}`,
		`{"schema":1,"kind":"results","id":"e","org":"o","body":{"execution":"e","finished":"2026-01-01T00:00:00Z","sealed":"YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOQ==","variables":null}}`,
		`{"schema":1,"kind":"results","id":"e","org":"o","body":{"execution":"e","finished":"2026-01-01T00:00:00Z","sealed":"YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOQ==","variables":{}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := schema.Decode(data)
		if err != nil {
			return
		}
		enc, err := schema.Encode(r)
		if err != nil {
			t.Fatalf("Decode accepted %q but Encode refused its result: %v", data, err)
		}
		r2, err := schema.Decode(enc)
		if err != nil {
			t.Fatalf("Decode refused its own canonical encoding %q: %v", enc, err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip changed the record:\n%+v\n%+v", r, r2)
		}
		enc2, err := schema.Encode(r2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable:\n%s\n%s (%v)", enc, enc2, err)
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("decoded record does not validate: %v", err)
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	h := strings.Repeat("a", 64)
	for _, s := range []string{
		"", "\n", h + "  a\n", h + "  a\n" + h + "  b/c\n", h + " *a\n", h + "  a", `\` + h + "  a\\\\b\n",
		h + "  ../a\n", h + "  /a\n", h + "  b\n" + h + "  a\n", h + "  a\n" + h + "  a\n", h + "  a\r\n",
		strings.ToUpper(h) + "  a\n", h + "   a\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := schema.ParseManifest(data)
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("ParseManifest accepted %q but Validate refuses it: %v", data, err)
		}
		out, err := m.MarshalText()
		if err != nil {
			t.Fatalf("MarshalText of parsed %q: %v", data, err)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("round trip changed the text:\n%q\n%q", data, out)
		}
		m2, err := schema.ParseManifest(out)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-parse: %v, %+v vs %+v", err, m, m2)
		}
	})
}
