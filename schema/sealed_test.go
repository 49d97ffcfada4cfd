package schema_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/examnode/examnode/schema"
)

// sealedBlob is a well-formed Result.Sealed: base64 of bytes that start
// like an age file (the schema checks the form, not the cryptography).
var sealedBlob = base64.StdEncoding.EncodeToString([]byte(schema.SealedResultFormat + "\n-> X25519 stanza\n--- mac\nciphertext"))

// maxSealedBlob is a well-formed Result.Sealed of exactly MaxSealedResult
// characters.
func maxSealedBlob() string {
	raw := []byte(schema.SealedResultFormat + "\n")
	raw = append(raw, make([]byte, schema.MaxSealedResult/4*3-len(raw))...)
	return base64.StdEncoding.EncodeToString(raw)
}

func TestMaxSealedBlobIsTheBound(t *testing.T) {
	if n := len(maxSealedBlob()); n != schema.MaxSealedResult {
		t.Fatalf("maxSealedBlob is %d characters; want %d", n, schema.MaxSealedResult)
	}
}

// TestResultSealedForm goes from a result in clear to its sealed form and
// back with the schema's helpers (the ciphertext is stood in for by the
// plaintext behind an age header), and checks each form's canonical
// encoding: a sealed result has no "variables", a result in clear always
// has them (an empty object for none).
func TestResultSealedForm(t *testing.T) {
	fin := time.Date(2026, 6, 1, 9, 30, 0, 0, time.UTC)
	clear := schema.Result{Execution: "e1", Finished: fin, Variables: map[string]schema.ResultVariable{
		"SCORE":    {BaseType: "float", Cardinality: "single", Value: []byte("7.5")},
		"RESPONSE": {BaseType: "identifier", Cardinality: "multiple", Value: []byte(`["A", "C"]`)},
	}}
	plain, err := clear.VariablesJSON()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"RESPONSE":{"base_type":"identifier","cardinality":"multiple","value":["A","C"]},"SCORE":{"base_type":"float","cardinality":"single","value":7.5}}`; string(plain) != want {
		t.Fatalf("VariablesJSON = %s; want %s", plain, want)
	}
	fake := append([]byte(schema.SealedResultFormat+"\n"), plain...)
	sealed := clear.WithSealed(fake)
	if !sealed.IsSealed() || sealed.Variables != nil || sealed.Execution != "e1" || !sealed.Finished.Equal(fin) {
		t.Fatalf("WithSealed: %+v", sealed)
	}
	rec, err := schema.NewRecord(org, "e1", sealed)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"execution":"e1","sealed":"` + sealed.Sealed + `","finished":"2026-06-01T09:30:00Z"}`; string(rec.Body) != want {
		t.Fatalf("sealed body = %s; want %s", rec.Body, want)
	}
	if strings.Contains(string(rec.Body), "7.5") {
		t.Fatal("the sealed record carries a variable's value in clear")
	}
	if _, err := sealed.VariablesJSON(); err == nil {
		t.Fatal("VariablesJSON of a sealed result: no error")
	}
	b, err := rec.DecodeBody()
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.(schema.Result).SealedBytes()
	if err != nil || string(got) != string(fake) {
		t.Fatalf("SealedBytes = %q, %v", got, err)
	}
	opened, err := sealed.WithVariables(got[len(schema.SealedResultFormat)+1:])
	if err != nil {
		t.Fatal(err)
	}
	back, err := schema.NewRecord(org, "e1", opened)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := schema.NewRecord(org, "e1", clear)
	if string(back.Body) != string(want.Body) {
		t.Fatalf("opened = %s; want %s", back.Body, want.Body)
	}
	if _, err := (schema.Result{Execution: "e1", Finished: fin, Variables: clear.Variables}).SealedBytes(); err == nil {
		t.Fatal("SealedBytes of a result in clear: no error")
	}

	// No variables: an empty object in clear, and back.
	empty := schema.Result{Execution: "e1", Finished: fin}
	er, err := schema.NewRecord(org, "e1", empty)
	if err != nil || !strings.Contains(string(er.Body), `"variables":{}`) {
		t.Fatalf("empty result in clear: %s %v", er.Body, err)
	}
	if p, _ := empty.VariablesJSON(); string(p) != "{}" {
		t.Fatalf("VariablesJSON of no variables = %s", p)
	}
	if o, err := empty.WithVariables([]byte("{}")); err != nil || o.Variables == nil {
		t.Fatalf("WithVariables({}) = %+v, %v", o, err)
	}

	// What does not open as variables.
	for _, bad := range []string{`[]`, `{"X":{"weight":1}}`, `not json`} {
		if _, err := empty.WithVariables([]byte(bad)); err == nil {
			t.Errorf("WithVariables(%s): no error", bad)
		}
	}
}
