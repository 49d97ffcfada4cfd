package schema_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/examnode/examnode/schema"
)

func ExampleEncode() {
	rec, err := schema.NewRecord("centre-paris", "tt-0042", schema.TestTaker{Login: "jdoe", Name: "Jane Doe"})
	if err != nil {
		fmt.Println(err)
		return
	}
	b, err := schema.Encode(rec)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rec.Key())
	fmt.Println(string(b))

	back, err := schema.Decode(b)
	fmt.Println(back.ID, err)

	_, err = schema.Decode([]byte(`{"schema":3,"kind":"test-takers","id":"x","org":"o","body":{}}`))
	fmt.Println(err)
	// Output:
	// /test-takers/tt-0042
	// {"schema":1,"kind":"test-takers","id":"tt-0042","org":"centre-paris","body":{"login":"jdoe","name":"Jane Doe"}}
	// tt-0042 <nil>
	// schema: unsupported schema version: record schema version 3 is not supported by this node (supports 1); upgrade examnode
}

func ExampleCheckWrite() {
	start := time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)
	end := start.Add(90 * time.Minute)
	finished, _ := schema.NewRecord("centre-paris", "e1", schema.Execution{
		Delivery: "d1", TestTaker: "tt1", State: schema.ExecutionFinished,
		Started: start, Finished: &end, VM: "12D3KooWExample", Version: 1,
	})
	reopened, _ := schema.NewRecord("centre-paris", "e1", schema.Execution{
		Delivery: "d1", TestTaker: "tt1", State: schema.ExecutionActive,
		Started: start, VM: "12D3KooWExample", Version: 1,
	})
	_, err := schema.CheckWrite(&finished, reopened)
	fmt.Println(err)

	again, err := schema.CheckWrite(&finished, finished)
	fmt.Println(again, err)
	// Output:
	// schema: reactivation in place: execution e1 is finished and cannot return to active; reactivation opens a new version: write /executions/e1.v2 with version 2 and previous "e1"
	// no-op <nil>
}

func ExampleCanWrite() {
	fmt.Println(schema.CanWrite(schema.RoleVM, schema.KindTestTakers))
	fmt.Println(schema.CanWrite(schema.RoleVM, schema.KindResults))
	// Output:
	// schema: write refused: role vm may not write test-takers: central data is authoritative; change it on the central host
	// <nil>
}

func ExampleManifest_MarshalText() {
	m := schema.Manifest{Entries: []schema.ManifestEntry{
		{Path: "result.json", SHA256: strings.Repeat("b", 64)},
		{Path: "execution.json", SHA256: strings.Repeat("a", 64)},
	}}
	text, _ := m.MarshalText()
	fmt.Print(string(text))
	// Output:
	// aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa  execution.json
	// bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb  result.json
}
